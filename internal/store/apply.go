package store

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// This file decides what a webhook event does to the rows it touches. It is pure: engines
// load the rows named by UserIDs and MatchSession, call Apply, and save what it returns, so
// every engine applies events the same way.
//
// Terra delivers at least once and in any order, so the rules make an older event unable to
// undo a newer state: statuses move only forward (by kind) or to a newer signed time, and
// merged fields take the earliest or latest value, never the last one delivered. For a
// plausible history (auth first, final events last) every delivery order gives the same row,
// apart from state_at and updated_at; scope deltas older than the row's scopes are dropped,
// as the order they applied in is unknown.

// SignedAtSlack widens "created at or before the event" when matching a session by end user:
// signature timestamps are whole seconds, so an event may carry a time up to a second
// earlier than the moment it was signed.
const SignedAtSlack = time.Second

// StoredTime is t as every engine stores it: UTC, at microsecond precision (PostgreSQL's),
// so that values read back compare equal whichever engine kept them.
func StoredTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}

// Final reports whether the status is one a Terra user_id never leaves: Terra deletes the
// id, and a reconnection issues a new one.
func (s ConnectionStatus) Final() bool {
	return s == StatusDisconnected || s == StatusRevoked
}

// Valid reports whether s is one of the connection states.
func (s ConnectionStatus) Valid() bool {
	switch s {
	case StatusConnected, StatusError, StatusRevoked, StatusDisconnected:
		return true
	}
	return false
}

// Valid reports whether s is one of the widget session states.
func (s SessionStatus) Valid() bool {
	switch s {
	case SessionCreated, SessionCompleted, SessionFailed, SessionExpired:
		return true
	}
	return false
}

// ParseList splits a comma-separated list (Terra's form for scopes and providers), trimming
// blanks and dropping empty and repeated items. It returns nil for an empty list.
func ParseList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item != "" && !slices.Contains(out, item) {
			out = append(out, item)
		}
	}
	return out
}

// JoinList is the inverse of ParseList: the comma-separated form engines store. Items that
// themselves hold commas are split, so a stored list always reads back the same.
func JoinList(items []string) string {
	return strings.Join(ParseList(strings.Join(items, ",")), ",")
}

// CheckWidgetSession validates a session about to be created and fills its defaults (status
// CREATED, created and updated times from now), with times as engines store them.
func CheckWidgetSession(s WidgetSession, now time.Time) (WidgetSession, error) {
	if s.ID == "" {
		return s, fmt.Errorf("widget session: empty id: %w", ErrInvalid)
	}
	if s.Status == "" {
		s.Status = SessionCreated
	}
	if !s.Status.Valid() {
		return s, fmt.Errorf("widget session %q: status %q: %w", s.ID, s.Status, ErrInvalid)
	}
	if s.ExpiresAt.IsZero() {
		return s, fmt.Errorf("widget session %q: no expiry: %w", s.ID, ErrInvalid)
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now
	}
	if s.UpdatedAt.IsZero() {
		s.UpdatedAt = s.CreatedAt
	}
	s.Providers = ParseList(strings.Join(s.Providers, ","))
	s.ExpiresAt = StoredTime(s.ExpiresAt)
	s.CreatedAt = StoredTime(s.CreatedAt)
	s.UpdatedAt = StoredTime(s.UpdatedAt)
	if s.ReturnUsedAt != nil {
		used := StoredTime(*s.ReturnUsedAt)
		s.ReturnUsedAt = &used
	}
	return s, nil
}

// CheckDelivery validates what an engine needs before it opens a transaction.
func CheckDelivery(d Delivery) error {
	if d.DedupeKey == "" {
		return fmt.Errorf("webhook delivery: empty dedupe key: %w", ErrInvalid)
	}
	if d.SignedAt.IsZero() {
		return fmt.Errorf("webhook delivery %q: no signed time: %w", d.DedupeKey, ErrInvalid)
	}
	if !d.Source.Valid() {
		return fmt.Errorf("webhook delivery %q: source %q: %w", d.DedupeKey, d.Source, ErrInvalid)
	}
	if err := CheckRelayEvent(d.Relay); err != nil {
		return fmt.Errorf("webhook delivery %q: %w", d.DedupeKey, err)
	}
	switch d.Event.Kind {
	case EventAuthSuccess, EventAuthFailure, EventDeauth, EventReauth, EventAccessRevoked,
		EventConnectionError, EventPermissionChange, EventIgnored:
		return nil
	}
	return fmt.Errorf("webhook delivery %q: event kind %q: %w", d.DedupeKey, d.Event.Kind, ErrInvalid)
}

// UserIDs lists the Terra users an event touches: the rows an engine loads before Apply.
func UserIDs(ev Event) []string {
	var ids []string
	switch ev.Kind {
	case EventAuthFailure, EventIgnored:
		return nil // an auth failure changes no user row
	}
	if ev.User != nil && ev.User.UserID != "" {
		ids = append(ids, ev.User.UserID)
	}
	if ev.Kind == EventReauth && ev.OldUser != nil && ev.OldUser.UserID != "" &&
		!slices.Contains(ids, ev.OldUser.UserID) {
		ids = append(ids, ev.OldUser.UserID)
	}
	return ids
}

// SessionMatch says how to find the widget session an event is recorded against: the first
// of IDs that names a session, by terragate's id or else by Terra's session id (webhooks
// carry Terra's, terragate's own events its own); else, when ReferenceID is set, the end
// user's newest session created at or before CreatedBy, expiring at or after AliveAt, and
// still CREATED or since EXPIRED: it had no outcome yet when the event happened, and an
// expiry sweep that ran before the delivery must not change which session it lands on.
type SessionMatch struct {
	IDs         []string
	ReferenceID string
	CreatedBy   time.Time
	AliveAt     time.Time
}

// MatchSession tells how to find the session for a delivery; ok is false for events that are
// not recorded against a session.
func MatchSession(d Delivery) (m SessionMatch, ok bool) {
	ev := d.Event
	if (ev.Kind != EventAuthSuccess && ev.Kind != EventAuthFailure) || ev.NoSession {
		return m, false
	}
	for _, id := range []string{ev.WidgetSessionID, ev.FlowID} {
		if id != "" && !slices.Contains(m.IDs, id) {
			m.IDs = append(m.IDs, id)
		}
	}
	m.ReferenceID = ev.ReferenceID
	if m.ReferenceID == "" && ev.User != nil {
		m.ReferenceID = ev.User.ReferenceID
	}
	at := StoredTime(d.SignedAt)
	m.CreatedBy = at.Add(SignedAtSlack)
	m.AliveAt = at
	return m, len(m.IDs) > 0 || m.ReferenceID != ""
}

// Current is what an engine loaded for one delivery.
type Current struct {
	Users   map[string]TerraUser // by user_id; a missing id is unknown
	Session *WidgetSession       // the session found with MatchSession, if any
}

// Changes is what applying a delivery changes; engines save it as given.
type Changes struct {
	Users   []TerraUser    // rows to insert or replace whole, in a stable order
	Session *WidgetSession // the session to save, or nil when it does not change
}

// Empty reports whether nothing changes.
func (c Changes) Empty() bool {
	return len(c.Users) == 0 && c.Session == nil
}

// Apply decides what a delivery changes, given the rows it touches as they are now. now
// stamps updated_at on what changes. It returns ErrInvalid when the event lacks what its kind
// needs (a user, distinct old and new users).
func Apply(d Delivery, cur Current, now time.Time) (Changes, error) {
	if err := CheckDelivery(d); err != nil {
		return Changes{}, err
	}
	ev := d.Event
	a := applier{
		ev:      ev,
		webhook: SourceOf(d) == SourceWebhook,
		at:      StoredTime(d.SignedAt),
		now:     StoredTime(now),
		cur:     cur.Users,
		next:    map[string]TerraUser{},
	}
	needUser := ev.Kind != EventAuthFailure && ev.Kind != EventIgnored
	if needUser && (ev.User == nil || ev.User.UserID == "") {
		return Changes{}, fmt.Errorf("webhook delivery %q: %s event without a user: %w", d.DedupeKey, ev.Kind, ErrInvalid)
	}
	switch ev.Kind {
	case EventAuthSuccess:
		a.connect(ev.User, "", "")
	case EventDeauth:
		a.finish(ev.User, StatusDisconnected, "", "", "")
	case EventAccessRevoked:
		a.finish(ev.User, StatusRevoked, "", "", "")
	case EventConnectionError:
		a.connectionError(ev.User)
	case EventPermissionChange:
		a.permissionChange(ev.User)
	case EventReauth:
		if err := a.reauth(d.DedupeKey); err != nil {
			return Changes{}, err
		}
	}
	var ch Changes
	for _, id := range a.order {
		u := a.next[id]
		if old, ok := a.cur[id]; ok && sameUser(old, u) {
			continue
		}
		u.UpdatedAt = a.now
		ch.Users = append(ch.Users, u)
	}
	if cur.Session != nil {
		if s, changed := applySession(ev, *cur.Session, a.now); changed {
			ch.Session = &s
		}
	}
	return ch, nil
}

// applier holds the rows of one delivery while its rules run.
type applier struct {
	ev      Event
	webhook bool      // the event is a Terra webhook, not something terragate learned itself
	at      time.Time // the event's signed time
	now     time.Time
	cur     map[string]TerraUser
	next    map[string]TerraUser
	order   []string // ids in the order first changed, for a stable result
}

// row returns the working copy of a user, or a new row (known false) in the given status for
// an unknown id.
func (a *applier) row(snap *UserSnapshot, status ConnectionStatus) (u TerraUser, known bool) {
	if u, ok := a.next[snap.UserID]; ok {
		return u, true
	}
	if u, ok := a.cur[snap.UserID]; ok {
		u.Scopes = slices.Clone(u.Scopes)
		return u, true
	}
	u = TerraUser{
		UserID:      snap.UserID,
		Status:      status,
		Active:      !status.Final(),
		ConnectedAt: a.at,
		StateAt:     a.at,
	}
	if snap.Scopes != nil {
		a.setScopes(&u, snap.Scopes)
	}
	return u, false
}

// save merges what every event says about a user and keeps the working copy: it fills empty
// fields, keeps the earliest connection time and the latest webhook time.
func (a *applier) save(u TerraUser, snap *UserSnapshot, referenceID, provider string) {
	if u.Provider == "" {
		u.Provider = firstOf(snap.Provider, a.ev.Provider, provider)
	}
	if u.ReferenceID == "" {
		u.ReferenceID = firstOf(snap.ReferenceID, a.ev.ReferenceID, referenceID)
	}
	if snap.CreatedAt != nil && !snap.CreatedAt.IsZero() {
		u.ConnectedAt = earlier(u.ConnectedAt, StoredTime(*snap.CreatedAt))
	}
	u.ConnectedAt = earlier(u.ConnectedAt, a.at)
	// last_webhook_update says when Terra last sent a webhook: terragate's own events
	// (redirects, API calls, syncs) only carry over what Terra reported.
	var latest *time.Time
	if a.webhook {
		at := a.at
		latest = &at
	}
	for _, t := range []*time.Time{snap.LastWebhookUpdate, u.LastWebhookUpdate} {
		if t != nil && (latest == nil || t.After(*latest)) {
			v := StoredTime(*t)
			latest = &v
		}
	}
	u.LastWebhookUpdate = latest
	if _, ok := a.next[u.UserID]; !ok {
		a.order = append(a.order, u.UserID)
	}
	a.next[u.UserID] = u
}

// scopesCurrent reports whether this event may set the row's scopes: the row is not
// replaced and no newer event has set them.
func (a *applier) scopesCurrent(u TerraUser) bool {
	return u.ReplacedBy == "" && (u.ScopesAt == nil || !a.at.Before(*u.ScopesAt))
}

// setScopes records scopes as of this event.
func (a *applier) setScopes(u *TerraUser, scopes []string) {
	u.Scopes = ParseList(strings.Join(scopes, ","))
	at := a.at
	u.ScopesAt = &at
}

// connect applies an auth success (or the new user of a reauth). Auth is the first event of
// a user_id, so a known row keeps its status (a late or repeated auth must not revive a final
// row nor clear ERROR) and only gains what it lacks, scopes included.
func (a *applier) connect(snap *UserSnapshot, referenceID, provider string) {
	u, known := a.row(snap, StatusConnected)
	if known && snap.Scopes != nil && u.ScopesAt == nil && u.ReplacedBy == "" {
		a.setScopes(&u, snap.Scopes)
	}
	a.save(u, snap, referenceID, provider)
}

// finish moves a user to a final status (DISCONNECTED or REVOKED). Final beats live whatever
// the order, since Terra never revives an id; between two final statuses the newer event
// wins, and REVOKED wins a tie so the result does not depend on delivery order. A replaced
// row is left as it is. replacedBy, when set, marks the row as replaced by that user.
func (a *applier) finish(snap *UserSnapshot, status ConnectionStatus, replacedBy, referenceID, provider string) {
	u, known := a.row(snap, status)
	if known && u.ReplacedBy == "" {
		switch {
		case !u.Status.Final():
			u.Status = status
			u.StateAt = later(u.StateAt, a.at)
		case a.at.After(u.StateAt) || (a.at.Equal(u.StateAt) && status == StatusRevoked):
			u.Status = status
			u.StateAt = a.at
		}
		u.Active = false
	}
	if replacedBy != "" && u.ReplacedBy == "" {
		u.ReplacedBy = replacedBy
		u.Active = false
	}
	a.save(u, snap, referenceID, provider)
}

// connectionError marks a live connection as failing. It never overrides a final status,
// nor a newer CONNECTED; the row stays active (listed) since the error may be transient.
func (a *applier) connectionError(snap *UserSnapshot) {
	u, known := a.row(snap, StatusError)
	if known && u.ReplacedBy == "" {
		switch u.Status {
		case StatusError:
			u.StateAt = later(u.StateAt, a.at)
		case StatusConnected:
			if !a.at.Before(u.StateAt) {
				u.Status = StatusError
				u.StateAt = a.at
			}
		}
	}
	a.save(u, snap, "", "")
}

// permissionChange sets the scopes from the event's full list when it carries one, else
// applies the added and removed scopes to the current set; an event older than the scopes'
// time changes nothing but the webhook time.
func (a *applier) permissionChange(snap *UserSnapshot) {
	u, known := a.row(snap, StatusConnected)
	if !known || a.scopesCurrent(u) {
		scopes := snap.Scopes
		if scopes == nil {
			removed := ParseList(strings.Join(a.ev.ScopesRemoved, ","))
			scopes = slices.DeleteFunc(ParseList(strings.Join(append(slices.Clone(u.Scopes), a.ev.ScopesAdded...), ",")),
				func(s string) bool { return slices.Contains(removed, s) })
		}
		a.setScopes(&u, scopes)
	}
	a.save(u, snap, "", "")
}

// reauth connects the new user and turns the old one into a tombstone replaced by it. The new
// user inherits the old one's end user and provider when the event does not say.
func (a *applier) reauth(dedupeKey string) error {
	nu, old := a.ev.User, a.ev.OldUser
	if old == nil || old.UserID == "" {
		a.connect(nu, "", "")
		return nil
	}
	if old.UserID == nu.UserID {
		return fmt.Errorf("webhook delivery %q: user_reauth with the same old and new user %q: %w", dedupeKey, nu.UserID, ErrInvalid)
	}
	referenceID, provider := old.ReferenceID, old.Provider
	if stored, ok := a.cur[old.UserID]; ok {
		referenceID = firstOf(referenceID, stored.ReferenceID)
		provider = firstOf(provider, stored.Provider)
	}
	a.connect(nu, referenceID, provider)
	n := a.next[nu.UserID]
	a.finish(old, StatusDisconnected, nu.UserID, n.ReferenceID, n.Provider)
	return nil
}

// applySession records an auth outcome on its widget session. COMPLETED never changes. A
// success completes any other session: it may override an earlier failure, and Terra may
// accept a user who finished just after the session's expiry. A failure only ends a session
// still CREATED, so an expiry or an earlier outcome stands.
func applySession(ev Event, s WidgetSession, now time.Time) (WidgetSession, bool) {
	var userProvider string
	if ev.User != nil {
		userProvider = ev.User.Provider
	}
	switch {
	case ev.Kind == EventAuthSuccess && s.Status != SessionCompleted:
		s.Status = SessionCompleted
		s.TerraUserID = ev.User.UserID
		s.Provider = firstOf(userProvider, ev.Provider, s.Provider)
		s.FailureReason = ""
	case ev.Kind == EventAuthFailure && s.Status == SessionCreated:
		s.Status = SessionFailed
		s.FailureReason = firstOf(ev.Reason, "cancelled")
		s.Provider = firstOf(ev.Provider, userProvider, s.Provider)
	default:
		return s, false
	}
	s.UpdatedAt = now
	return s, true
}

// sameUser reports whether two rows hold the same values, updated_at aside.
func sameUser(a, b TerraUser) bool {
	return a.UserID == b.UserID && a.Provider == b.Provider && a.ReferenceID == b.ReferenceID &&
		a.Active == b.Active && a.Status == b.Status && slices.Equal(a.Scopes, b.Scopes) &&
		sameTime(a.ScopesAt, b.ScopesAt) && a.ConnectedAt.Equal(b.ConnectedAt) &&
		sameTime(a.LastWebhookUpdate, b.LastWebhookUpdate) && a.StateAt.Equal(b.StateAt) &&
		a.ReplacedBy == b.ReplacedBy
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
