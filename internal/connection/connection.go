// Package connection keeps end users' Terra connections current: it applies what terragate
// learns (webhooks, confirmed redirects, its own API calls, reconciliation with Terra's
// lists) through the store's rules and tells subscribers what changed.
package connection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/terragate/terragate/internal/events"
	"github.com/terragate/terragate/internal/metrics"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
)

// ErrNotFound is returned for a connection that does not exist or is not the caller's:
// the two are indistinguishable on purpose.
var ErrNotFound = fmt.Errorf("connection %w", store.ErrNotFound)

// Terra is the part of the Terra client the service needs.
type Terra interface {
	UserInfoByReferenceID(ctx context.Context, referenceID string) ([]terra.User, error)
	UserInfo(ctx context.Context, userID string) (terra.UserInfo, error)
	DeauthenticateUser(ctx context.Context, userID string) error
	SubscriptionsPage(ctx context.Context, page, perPage int) (terra.SubscriptionsPage, error)
	RequestHistory(ctx context.Context, typ, userID string, start, end time.Time) error
}

// Service applies connection changes and publishes them.
type Service struct {
	metrics *metrics.Metrics // completed sessions per provider (nil: none)
	// SweepPageSize is how many users the sweep reads per /subscriptions page (0: Terra's
	// default, 500).
	SweepPageSize int

	terra   Terra
	store   store.Store
	bus     events.Bus
	mapping *Mapping
	log     *slog.Logger
	now     func() time.Time
	// backfillDays and backfillTypes are the history asked for each new connection
	// (WithBackfill); zero days: none.
	backfillDays  int
	backfillTypes []string
	backfillReady func() // told when an auth may have recorded a backfill
}

// Option configures a Service.
type Option func(*Service)

// WithBackfill makes every new connection's first auth record a backfill of the last days
// days of types, for the backfill worker to ask Terra for (BACKFILL_DAYS, BACKFILL_TYPES);
// ready, when not nil, is called after such an auth is applied, so that the worker need not
// wait for its next look.
func WithBackfill(days int, types []string, ready func()) Option {
	return func(s *Service) {
		s.backfillDays, s.backfillTypes, s.backfillReady = days, slices.Clone(types), ready
	}
}

// New returns a Service that reads Terra's terms through mapping (nil: one that verifies
// no mobile SDK reference, so SDK connections belong to nobody).
func New(t Terra, st store.Store, bus events.Bus, mapping *Mapping, m *metrics.Metrics, log *slog.Logger, opts ...Option) *Service {
	if mapping == nil {
		mapping = NewMapping(nil, nil)
	}
	s := &Service{terra: t, store: st, bus: bus, mapping: mapping, metrics: m, log: log, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// DecodeEvent reads a webhook body Terra signed and says what it means for the store
// (Mapping.DecodeEvent), for the webhook handler.
func (s *Service) DecodeEvent(body []byte) (store.Event, error) {
	return s.mapping.DecodeEvent(body)
}

// ApplyWebhook applies a delivery through the store's rules and publishes what changed. It
// has the store's signature so the webhook handler can use either.
func (s *Service) ApplyWebhook(ctx context.Context, d store.Delivery) (store.Outcome, error) {
	d.Audit = s.auditFor(store.SourceOf(d), d.Event)
	if s.backfillDays > 0 && len(s.backfillTypes) > 0 && d.Event.Kind == store.EventAuthSuccess {
		// The store records it only for a connection it did not have.
		until := s.now().UTC()
		d.Backfill = &store.BackfillPlan{Types: s.backfillTypes, Since: until.AddDate(0, 0, -s.backfillDays), Until: until}
	}
	out, err := s.apply(ctx, d)
	if err == nil && !out.Duplicate && d.Backfill != nil && s.backfillReady != nil {
		s.backfillReady()
	}
	if err == nil && !out.Duplicate && unattributedNew(d.Event, out) {
		// The reference stays out of the log: it names an end user. The audit has it.
		s.log.WarnContext(ctx, "connection stored for no end user: its reference_id is not one terragate issued",
			"user_id", d.Event.User.UserID, "provider", d.Event.Provider, "reason", d.Event.Unattributed)
	}
	return out, err
}

// unattributedNew reports whether applying ev stored its connection for nobody although
// Terra named someone: a new connection (an auth or a reconnection) whose reference was
// refused, and that no earlier event had attributed either.
func unattributedNew(ev store.Event, out store.Outcome) bool {
	if ev.Unattributed == "" || ev.User == nil || (ev.Kind != store.EventAuthSuccess && ev.Kind != store.EventReauth) {
		return false
	}
	for _, u := range out.Users {
		if u.UserID == ev.User.UserID {
			_, known := out.Before[u.UserID]
			return !known && u.ReferenceID == ""
		}
	}
	return false
}

// apply applies d, with the audit it names, and publishes what changed.
func (s *Service) apply(ctx context.Context, d store.Delivery) (store.Outcome, error) {
	out, err := s.store.ApplyWebhook(ctx, d)
	if err != nil || out.Duplicate {
		return out, err
	}
	s.publish(ctx, d.Event.Kind, out)
	return out, nil
}

// RecordDeadLetter keeps a delivery that cannot be applied, for a later replay.
func (s *Service) RecordDeadLetter(ctx context.Context, d store.Delivery, reason string) (store.InboxEvent, error) {
	return s.store.RecordDeadLetter(ctx, d, reason)
}

// publish tells subscribers about each changed connection and session. The event type
// follows from the kind of event and the row's resulting state, so a late or repeated event
// that changed nothing visible says what the row is, never what it is not.
func (s *Service) publish(ctx context.Context, kind store.EventKind, out store.Outcome) {
	at := s.now().UTC()
	for u, typ := range news(kind, out) {
		s.send(ctx, events.Event{ReferenceID: u.ReferenceID, Type: typ, UserID: u.UserID, At: at})
	}
	if out.SessionChanged && out.Session != nil && out.Session.Status == store.SessionCompleted {
		s.metrics.SessionCompleted(out.Session.Provider)
	}
	if out.SessionChanged && out.Session != nil && out.Session.ReferenceID != "" {
		s.send(ctx, events.Event{ReferenceID: out.Session.ReferenceID, Type: events.SessionChanged, SessionID: out.Session.ID, At: at})
	}
}

// news yields the changed connections of out that subscribers hear of, with the event
// type each is told as.
func news(kind store.EventKind, out store.Outcome) iter.Seq2[store.TerraUser, events.Type] {
	return func(yield func(store.TerraUser, events.Type) bool) {
		for _, u := range out.Users {
			typ, ok := eventType(kind, u)
			if !ok || u.ReferenceID == "" {
				continue
			}
			if before, known := out.Before[u.UserID]; known && !visiblyChanged(before, u) {
				continue // the same news again (a webhook after a confirmed redirect, a retry)
			}
			if !yield(u, typ) {
				return
			}
		}
	}
}

// auditFor is the audit of a delivery from source: connections added and removed, which
// the store records in the transaction that applies it. API disconnects carry the entry of
// the caller, who knows who asked (Disconnect).
func (s *Service) auditFor(source store.DeliverySource, ev store.Event) func(store.Outcome) []store.AuditEntry {
	if source == store.SourceAPI {
		return nil
	}
	kind := ev.Kind
	return func(out store.Outcome) []store.AuditEntry {
		var entries []store.AuditEntry
		at := s.now().UTC()
		if unattributedNew(ev, out) {
			e := store.AuditEntry{At: at, Actor: "terra", ActorKind: store.ActorTerra, Action: store.ActionConnectionUnattributed,
				Subject: ev.User.UserID, Detail: map[string]string{"provider": ev.Provider, "reason": ev.Unattributed, "source": string(source)}}
			if len(ev.Claimed) <= store.MaxAuditField && utf8.ValidString(ev.Claimed) && !strings.ContainsRune(ev.Claimed, 0) {
				e.ReferenceID = ev.Claimed // else the entry would be refused: it says why without it
			}
			if source != store.SourceWebhook {
				e.Actor, e.ActorKind = "terragate", store.ActorSystem
			}
			entries = append(entries, e)
		}
		for u, typ := range news(kind, out) {
			var action string
			switch typ {
			case events.Connected, events.Reauthenticated:
				action = store.ActionConnectionAdded
			case events.Disconnected, events.Revoked:
				action = store.ActionConnectionRemoved
			default:
				continue
			}
			e := store.AuditEntry{At: at, Actor: "terra", ActorKind: store.ActorTerra, Action: action, Subject: u.UserID,
				ReferenceID: u.ReferenceID, Detail: map[string]string{"provider": u.Provider, "status": string(u.Status), "source": string(source)}}
			if source != store.SourceWebhook {
				e.Actor, e.ActorKind = "terragate", store.ActorSystem
			}
			entries = append(entries, e)
		}
		return entries
	}
}

// PublishSessions tells subscribers that these sessions changed (e.g. expired).
func (s *Service) PublishSessions(ctx context.Context, sessions []store.WidgetSession) {
	at := s.now().UTC()
	for _, ws := range sessions {
		s.send(ctx, events.Event{ReferenceID: ws.ReferenceID, Type: events.SessionChanged, SessionID: ws.ID, At: at})
	}
}

func (s *Service) send(ctx context.Context, ev events.Event) {
	if err := s.bus.Publish(ctx, ev); err != nil {
		// The change is committed; a subscriber that misses it sees it on its next read.
		s.log.WarnContext(ctx, "event not published", "type", ev.Type, "err", err)
	}
}

// visiblyChanged reports whether a subscriber would see a difference.
func visiblyChanged(before, after store.TerraUser) bool {
	return before.Status != after.Status || before.Active != after.Active || before.ReplacedBy != after.ReplacedBy ||
		!slices.Equal(before.Scopes, after.Scopes)
}

func eventType(kind store.EventKind, u store.TerraUser) (events.Type, bool) {
	if u.ReplacedBy != "" {
		return "", false // the new user's REAUTHENTICATED says it
	}
	switch kind {
	case store.EventAuthSuccess:
		if u.Status == store.StatusConnected {
			return events.Connected, true
		}
	case store.EventDeauth, store.EventAccessRevoked:
		switch u.Status {
		case store.StatusDisconnected:
			return events.Disconnected, true
		case store.StatusRevoked:
			return events.Revoked, true
		}
	case store.EventConnectionError:
		if u.Status == store.StatusError {
			return events.Error, true
		}
	case store.EventPermissionChange:
		return events.PermissionsChanged, true
	case store.EventReauth:
		return events.Reauthenticated, true
	}
	return "", false
}

// Disconnect removes one of the end user's connections: Terra first (so nothing keeps
// flowing), then the store, with the audit entry of who asked in the same commit. Terra
// answering 404 means it is already gone there. When Terra cannot be reached the row is
// left as it was. by is the caller's entry (who, when, from where); Disconnect makes it a
// connection.disconnected entry for this connection and its provider, and refuses one the
// store would refuse (ErrInvalid) before calling Terra, so that no disconnect goes
// unrecorded. A connection already disconnected is returned as it is, recording nothing.
func (s *Service) Disconnect(ctx context.Context, referenceID, userID string, by store.AuditEntry) (store.TerraUser, error) {
	u, err := s.own(ctx, referenceID, userID)
	if err != nil {
		return store.TerraUser{}, err
	}
	if u.Status == store.StatusDisconnected {
		return u, nil
	}
	entry := by
	entry.Action, entry.Subject, entry.ReferenceID = store.ActionConnectionDisconnected, userID, referenceID
	entry.Detail = map[string]string{"provider": u.Provider}
	if entry.At.IsZero() {
		entry.At = s.now().UTC()
	}
	if _, err := store.CheckAudit(entry, s.now()); err != nil {
		return store.TerraUser{}, err
	}
	if err := s.terra.DeauthenticateUser(ctx, userID); err != nil && !terra.IsNotFound(err) {
		return store.TerraUser{}, fmt.Errorf("deauthenticate user: %w", err)
	}
	d := synthetic(store.SourceAPI, "disconnect:"+userID, s.now(), store.Event{
		Kind: store.EventDeauth, Type: terra.EventDeauth, User: snapshotOf(u), ReferenceID: referenceID,
	})
	d.Audit = func(store.Outcome) []store.AuditEntry { return []store.AuditEntry{entry} }
	if _, err := s.apply(ctx, d); err != nil {
		return store.TerraUser{}, err
	}
	return s.store.TerraUser(ctx, userID)
}

// own returns the end user's connection, or ErrNotFound for anyone else's.
func (s *Service) own(ctx context.Context, referenceID, userID string) (store.TerraUser, error) {
	u, err := s.store.TerraUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (u.ReferenceID != referenceID || u.ReplacedBy != "")) {
		return store.TerraUser{}, ErrNotFound
	}
	return u, err
}

// Sync reconciles one end user's connections with Terra's userInfo?reference_id= and returns
// them as they are afterwards, inactive ones included. The listing is one call, so nothing
// slides past it as in the sweep, but an answer can still leave a live user out (an empty
// {} is accepted), so the same confirmation applies.
//
// Terra lists by the exact reference: the end user's plain id (their widget connections,
// and SDK connections a device claimed for them, which reconcile leaves out) and the
// reference terragate issues them for the mobile SDK (their verified SDK connections).
func (s *Service) Sync(ctx context.Context, referenceID string) ([]store.TerraUser, error) {
	listedAt := s.now()
	users, err := s.terra.UserInfoByReferenceID(ctx, referenceID)
	if err != nil {
		return nil, fmt.Errorf("sync connections: %w", err)
	}
	if tagged := s.mapping.refs.For(referenceID); tagged != "" {
		sdkUsers, err := s.terra.UserInfoByReferenceID(ctx, tagged)
		if err != nil {
			return nil, fmt.Errorf("sync connections: %w", err)
		}
		users = append(users, sdkUsers...)
	}
	if err := s.reconcile(ctx, referenceID, users, listedAt); err != nil {
		return nil, err
	}
	return s.store.ListTerraUsers(ctx, referenceID, true)
}

// reconcile makes the store agree with Terra's list of one end user's users, read from
// listedAt on: missing ones are added as connected, and active ones the list leaves out
// become DISCONNECTED once Terra confirms each is gone (see goneAtTerra). It goes through the
// same rules as webhooks, so a user_id that ended is never revived.
func (s *Service) reconcile(ctx context.Context, referenceID string, terraUsers []terra.User, listedAt time.Time) error {
	now := s.now()
	atTerra := map[string]bool{}
	for _, tu := range terraUsers {
		if tu.UserID == "" || (tu.Active != nil && !*tu.Active) {
			continue
		}
		// Terra's lists carry the reference as set: only a connection it names this end
		// user for (attribute) is theirs. One Terra lists without any reference was listed
		// for this end user, so it is theirs unless it comes from the SDK.
		if tu.ReferenceID == nil || *tu.ReferenceID == "" || *tu.ReferenceID == "null" {
			if s.mapping.sdkOnly(tu.Provider) {
				continue
			}
		} else if s.mapping.owner(tu) != referenceID {
			continue
		}
		atTerra[tu.UserID] = true
		if _, err := s.store.TerraUser(ctx, tu.UserID); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		snap := s.mapping.snapshotOf(tu)
		snap.ReferenceID = referenceID
		if _, err := s.ApplyWebhook(ctx, synthetic(store.SourceSync, "add:"+tu.UserID, now, store.Event{
			Kind: store.EventAuthSuccess, Type: terra.EventAuth, User: snap, ReferenceID: referenceID,
		})); err != nil {
			return err
		}
	}
	ours, err := s.store.ListTerraUsers(ctx, referenceID, false)
	if err != nil {
		return err
	}
	// A row stored or changed once the listing began (an auth webhook landing while Terra's
	// list was read) may be newer than the list: absent from it is no proof it is gone, and
	// DISCONNECTED would be final. The next sync sees it.
	since := store.StoredTime(listedAt)
	for _, u := range ours {
		if atTerra[u.UserID] || !u.Active || !u.UpdatedAt.Before(since) {
			continue
		}
		gone, err := s.goneAtTerra(ctx, u.UserID)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Not knowing is not gone: the next reconcile asks again.
			s.log.WarnContext(ctx, "connection missing from Terra's list not confirmed gone; left as it is", "user_id", u.UserID, "err", err)
			continue
		}
		if !gone {
			s.log.InfoContext(ctx, "connection missing from Terra's list is still at Terra; kept", "user_id", u.UserID)
			continue
		}
		if _, err := s.ApplyWebhook(ctx, synthetic(store.SourceSync, "gone:"+u.UserID, now, store.Event{
			Kind: store.EventDeauth, Type: terra.EventDeauth, User: snapshotOf(u), ReferenceID: referenceID,
		})); err != nil {
			return err
		}
	}
	return nil
}

// goneAtTerra asks Terra about one user a listing left out: a 404 or is_authenticated=false
// means it is gone. Lists are not proof on their own (a /subscriptions page read after Terra
// deleted users starts later than it should, so a live user slides past the reader) and
// DISCONNECTED is final for a user_id. An error means Terra could not say. Only users already
// missing from a list are asked about, so a reconcile normally makes no such call.
func (s *Service) goneAtTerra(ctx context.Context, userID string) (bool, error) {
	ui, err := s.terra.UserInfo(ctx, userID)
	switch {
	case terra.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, err
	}
	return !ui.IsAuthenticated, nil
}

// sweepPageSize is Terra's default page size for /subscriptions.
const sweepPageSize = 500

// maxSweepPages bounds one sweep; at 500 a page that is 5 million users.
const maxSweepPages = 10000

// Sweep reconciles every end user with Terra's full user list, read page by page. A sweep
// that cannot read every page changes nothing: a partial list would look like disconnections.
// Pages are read by position, so users Terra deletes between two reads shift later users
// back a page and one can be skipped: every connection the list leaves out is confirmed
// gone with Terra before it is disconnected, and one Terra cannot confirm is left for the
// next sweep without failing this one.
func (s *Service) Sweep(ctx context.Context) error {
	perPage := s.SweepPageSize
	if perPage <= 0 {
		perPage = sweepPageSize
	}
	listedAt := s.now()
	byRef := map[string][]terra.User{}
	for page := 0; ; page++ {
		if page >= maxSweepPages {
			return fmt.Errorf("sync sweep: more than %d pages", maxSweepPages)
		}
		p, err := s.terra.SubscriptionsPage(ctx, page, perPage)
		if err != nil {
			return fmt.Errorf("sync sweep, page %d: %w", page, err)
		}
		for _, u := range p.Users {
			// Grouped by the end user each names: verified SDK references join their end
			// user's plain id, and connections that name nobody are reconciled for nobody.
			if owner := s.mapping.owner(u); owner != "" {
				byRef[owner] = append(byRef[owner], u)
			}
		}
		if p.Next == nil || *p.Next <= page {
			break
		}
	}
	refs, err := s.store.ReferenceIDs(ctx)
	if err != nil {
		return err
	}
	for _, r := range refs {
		if _, ok := byRef[r]; !ok {
			byRef[r] = nil
		}
	}
	for ref, users := range byRef {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.reconcile(ctx, ref, users, listedAt); err != nil {
			return fmt.Errorf("sync sweep: %w", err)
		}
	}
	s.log.InfoContext(ctx, "sync sweep done", "end_users", len(byRef))
	return nil
}

// ExpireSessions marks sessions past their expiry as EXPIRED and tells their subscribers.
func (s *Service) ExpireSessions(ctx context.Context) error {
	expired, err := s.store.ExpireWidgetSessions(ctx, s.now())
	if err != nil {
		return err
	}
	s.PublishSessions(ctx, expired)
	return nil
}

// Leases name the background jobs that run on one instance of a cluster at a time.
const (
	leaseExpiry = "session-expiry"
	leaseSweep  = "sync-sweep"
)

// Run does the background work until ctx ends: session expiry every expiryEvery, and the
// sync sweep every syncEvery (0 turns it off). Neither blocks requests. With several
// instances on one database, each job runs on whichever instance holds its lease (holder
// names this instance); the lease outlives two periods, so a dead holder is replaced.
func (s *Service) Run(ctx context.Context, holder string, syncEvery, expiryEvery time.Duration) {
	expiry := time.NewTicker(expiryEvery)
	defer expiry.Stop()
	var sweep <-chan time.Time
	if syncEvery > 0 {
		t := time.NewTicker(syncEvery)
		defer t.Stop()
		sweep = t.C
	}
	defer func() {
		// Hand the leases over at once rather than after they expire.
		release, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		for _, name := range []string{leaseExpiry, leaseSweep} {
			_ = s.store.ReleaseLease(release, name, holder)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-expiry.C:
			if s.lease(ctx, leaseExpiry, holder, 2*expiryEvery) {
				if err := s.ExpireSessions(ctx); err != nil && ctx.Err() == nil {
					s.log.WarnContext(ctx, "session expiry failed", "err", err)
				}
			}
		case <-sweep:
			if s.lease(ctx, leaseSweep, holder, 2*syncEvery) {
				if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
					s.log.WarnContext(ctx, "sync sweep failed", "err", err)
				}
			}
		}
	}
}

// lease takes or renews the named lease for holder.
func (s *Service) lease(ctx context.Context, name, holder string, ttl time.Duration) bool {
	now := s.now()
	ok, err := s.store.AcquireLease(ctx, name, holder, now, now.Add(ttl))
	if err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "lease not taken", "lease", name, "err", err)
	}
	return ok && err == nil
}

// synthetic builds a delivery for something terragate learned itself, so it goes through
// the same rules and the same inbox as Terra's webhooks.
func synthetic(source store.DeliverySource, key string, at time.Time, ev store.Event) store.Delivery {
	body, _ := json.Marshal(map[string]any{"source": source, "type": ev.Type, "kind": ev.Kind, "user": ev.User, "reference_id": ev.ReferenceID})
	at = at.UTC()
	return store.Delivery{
		DedupeKey:  string(source) + ":" + key + ":" + uuid.NewString(),
		Source:     source,
		SignedAt:   at,
		ReceivedAt: at,
		Body:       body,
		Event:      ev,
	}
}

func snapshotOf(u store.TerraUser) *store.UserSnapshot {
	return &store.UserSnapshot{UserID: u.UserID, Provider: u.Provider, ReferenceID: u.ReferenceID}
}
