package store

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// AuditEntry is one line of the audit log: who did what, to which end user's data, from
// where. The log is append-only: entries are never changed or removed.
type AuditEntry struct {
	ID int64 // set by the store, increasing in the order entries were appended
	// At is when it happened; the store fills in the current time when it is zero.
	At time.Time
	// Actor is who did it: an end user's id, "svc:<name>" for a service, or a name for the
	// system or Terra.
	Actor     string
	ActorKind string // one of the Actor* kinds
	Action    string // one of the Action* names
	// Subject is what it was done to: a session id, a Terra user id, a query name.
	Subject     string
	ReferenceID string // the end user concerned, if any
	ClientIP    string // the caller's address, if known; stored as netip prints it
	// Detail adds a few short strings (MaxAuditDetailKeys at most). It must never hold
	// tokens or secrets: keys that name one are refused. Empty reads back as nil.
	Detail map[string]string
}

// Actor kinds.
const (
	ActorUser    = "user"    // an end user; Actor is their id
	ActorService = "service" // a service with a key; Actor is "svc:<name>"
	ActorSystem  = "system"  // terragate itself (expiry sweep, sync)
	ActorTerra   = "terra"   // Terra, through a webhook
)

// ServiceActorPrefix starts the Actor of every ActorService entry, and of no other: an end
// user whose id looked like a service cannot pass as one in the log.
const ServiceActorPrefix = "svc:"

// Audit actions. A new action is added here; the database checks only that one is given.
const (
	ActionSessionCreated         = "session.created"
	ActionConnectionAdded        = "connection.added"
	ActionConnectionRemoved      = "connection.removed"
	ActionConnectionDisconnected = "connection.disconnected"
	ActionAdminRead              = "admin.read"
	// ActionWebhookReplay is a dead letter replayed on a service's request; Detail's
	// ReplayOutcomeKey says whether it applied (see ReplayAudits).
	ActionWebhookReplay = "webhook.replay"
	// ActionConnectionUnattributed is a connection stored for no end user because the
	// reference Terra carried for it was not one terragate issued (a mobile SDK connection
	// whose device named a plain, altered or missing reference). Subject is the Terra user,
	// ReferenceID the end user it claimed (if any), Detail's "reason" says why.
	ActionConnectionUnattributed = "connection.unattributed"
	// ActionSDKTokenCreated is a mobile SDK token minted for an end user (never the token).
	ActionSDKTokenCreated = "sdk.token_created"
	// ActionRelayReplay is a relay dead letter put back to PENDING on a service's request;
	// Subject is the delivery, Detail's ReplayOutcomeKey says it succeeded.
	ActionRelayReplay = "relay.replay"
	// ActionBackfillRequested is history asked of Terra for one connection (Subject), by
	// an end user, a service or terragate itself for a new connection; Detail names the
	// types and the range.
	ActionBackfillRequested = "connection.backfill_requested"
)

// The outcome of a replay, in the Detail of its ActionWebhookReplay entry.
const (
	ReplayOutcomeKey = "outcome"
	ReplaySucceeded  = "succeeded" // the delivery applied; the row is no longer a dead letter
	ReplayFailed     = "failed"    // it failed again; the row stays a dead letter
)

// Limits on what one audit entry may carry, so that the log stays small and readable.
const (
	MaxAuditDetailKeys  = 20
	MaxAuditDetailKey   = 64  // bytes
	MaxAuditDetailValue = 256 // bytes
	MaxAuditField       = 256 // bytes, for Actor, Subject and ReferenceID
)

// secretWords are parts of Detail keys that name what must never be logged. It is a guard
// against the obvious mistake, not a proof that no value is secret.
var secretWords = []string{
	"token", "secret", "password", "passwd", "authorization", "cookie", "api_key", "apikey", "signature",
}

// ValidAuditActorKind reports whether kind is one of the Actor* kinds.
func ValidAuditActorKind(kind string) bool {
	switch kind {
	case ActorUser, ActorService, ActorSystem, ActorTerra:
		return true
	}
	return false
}

// ValidAuditAction reports whether action is one of the Action* names.
func ValidAuditAction(action string) bool {
	switch action {
	case ActionSessionCreated, ActionConnectionAdded, ActionConnectionRemoved,
		ActionConnectionDisconnected, ActionAdminRead, ActionWebhookReplay,
		ActionConnectionUnattributed, ActionSDKTokenCreated, ActionRelayReplay, ActionBackfillRequested:
		return true
	}
	return false
}

// CheckAudits checks entries as CheckAudit does, all or nothing: the first refusal is the
// error. It is for entries that must be stored with their change or not at all.
func CheckAudits(entries []AuditEntry, now time.Time) ([]AuditEntry, error) {
	out := make([]AuditEntry, 0, len(entries))
	for _, e := range entries {
		c, err := CheckAudit(e, now)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ReplayAudits are the entries of a replay as ReplayDeadLetter stores them with the replay's
// result: each entry given with Detail[ReplayOutcomeKey] set to ReplaySucceeded or
// ReplayFailed, checked as CheckAudits does.
func ReplayAudits(entries []AuditEntry, succeeded bool, now time.Time) ([]AuditEntry, error) {
	outcome := ReplayFailed
	if succeeded {
		outcome = ReplaySucceeded
	}
	with := make([]AuditEntry, 0, len(entries))
	for _, e := range entries {
		e.Detail = maps.Clone(e.Detail)
		if e.Detail == nil {
			e.Detail = map[string]string{}
		}
		e.Detail[ReplayOutcomeKey] = outcome
		with = append(with, e)
	}
	return CheckAudits(with, now)
}

// DeliveryAudit is the audit of applying d with outcome out (d.Audit's entries), checked:
// the entries to store, and the refusals of those CheckAudit refuses, which must never
// refuse the event and are only to be logged.
func DeliveryAudit(d Delivery, out Outcome, now time.Time) (entries []AuditEntry, refused []error) {
	if d.Audit == nil {
		return nil, nil
	}
	for _, e := range d.Audit(out) {
		c, err := CheckAudit(e, now)
		if err != nil {
			refused = append(refused, err)
			continue
		}
		entries = append(entries, c)
	}
	return entries, refused
}

// CheckAudit validates an entry about to be appended and puts it in the form engines store:
// At defaulted to now and as StoredTime gives it, ClientIP normalized, an empty Detail nil.
// What it refuses is ErrInvalid.
func CheckAudit(e AuditEntry, now time.Time) (AuditEntry, error) {
	invalid := func(format string, args ...any) (AuditEntry, error) {
		return AuditEntry{}, fmt.Errorf("audit entry %q: %s: %w", e.Action, fmt.Sprintf(format, args...), ErrInvalid)
	}
	if !ValidAuditAction(e.Action) {
		return invalid("unknown action")
	}
	if !ValidAuditActorKind(e.ActorKind) {
		return invalid("actor kind %q", e.ActorKind)
	}
	if e.Actor == "" {
		return invalid("no actor")
	}
	if service := strings.HasPrefix(e.Actor, ServiceActorPrefix); service != (e.ActorKind == ActorService) {
		return invalid("actor %q of kind %q: services, and only they, are %q<name>", e.Actor, e.ActorKind, ServiceActorPrefix)
	}
	for name, v := range map[string]string{"actor": e.Actor, "subject": e.Subject, "reference id": e.ReferenceID} {
		if err := checkText(v, MaxAuditField); err != nil {
			return invalid("%s: %v", name, err)
		}
	}
	if e.ClientIP != "" {
		ip, err := netip.ParseAddr(e.ClientIP)
		if err != nil {
			return invalid("client ip %q: not an address", e.ClientIP)
		}
		e.ClientIP = ip.Unmap().String()
	}
	if len(e.Detail) > MaxAuditDetailKeys {
		return invalid("%d detail keys; at most %d", len(e.Detail), MaxAuditDetailKeys)
	}
	for _, k := range slices.Sorted(maps.Keys(e.Detail)) {
		if k == "" {
			return invalid("empty detail key")
		}
		if err := checkText(k, MaxAuditDetailKey); err != nil {
			return invalid("detail key: %v", err)
		}
		lower := strings.ToLower(k)
		for _, w := range secretWords {
			if strings.Contains(lower, w) {
				return invalid("detail key %q names a secret", k)
			}
		}
		if err := checkText(e.Detail[k], MaxAuditDetailValue); err != nil {
			return invalid("detail %q: %v", k, err)
		}
	}
	if len(e.Detail) == 0 {
		e.Detail = nil
	} else {
		e.Detail = maps.Clone(e.Detail)
	}
	if e.At.IsZero() {
		e.At = now
	}
	e.At = StoredTime(e.At)
	if e.At.Before(minTime) || !e.At.Before(maxTime) {
		return invalid("time %v out of range", e.At)
	}
	e.ID = 0
	return e, nil
}

// checkText refuses text both engines would not keep alike: invalid UTF-8, NUL bytes
// (PostgreSQL's text cannot hold them), or more than max bytes.
func checkText(s string, max int) error {
	switch {
	case len(s) > max:
		return fmt.Errorf("%d bytes; at most %d", len(s), max)
	case !utf8.ValidString(s):
		return fmt.Errorf("not UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("holds a NUL byte")
	}
	return nil
}

// AuditDetailJSON is the stored form of an entry's Detail: a JSON object, "{}" when empty.
func AuditDetailJSON(detail map[string]string) []byte {
	if len(detail) == 0 {
		return []byte("{}")
	}
	b, err := json.Marshal(detail)
	if err != nil {
		panic(fmt.Sprintf("store: marshal audit detail: %v", err)) // a map of strings always marshals
	}
	return b
}

// ParseAuditDetail reads back what AuditDetailJSON stored; an empty object is nil.
func ParseAuditDetail(b []byte) (map[string]string, error) {
	var detail map[string]string
	if err := json.Unmarshal(b, &detail); err != nil {
		return nil, fmt.Errorf("audit detail: %w", err)
	}
	if len(detail) == 0 {
		return nil, nil
	}
	return detail, nil
}

// AuditFilter narrows ListAudit. Empty fields match any entry; Since is inclusive and Until
// exclusive.
type AuditFilter struct {
	Actor       string
	ReferenceID string
	Action      string
	Since       time.Time
	Until       time.Time
}

// AuditPage is one page of ListAudit, newest entry first. There is no total count: the log
// only grows, and counting it is a scan of its whole index.
type AuditPage struct {
	Entries     []AuditEntry
	EndCursor   string // the cursor of the last entry, to pass as Page.After; "" when empty
	HasNextPage bool
}

// AuditQuery is what an engine needs to run ListAudit: the filter's time bounds made
// concrete and the keyset position to resume below.
type AuditQuery struct {
	AuditFilter
	BeforeAt time.Time // resume below (BeforeAt, BeforeID)
	BeforeID int64
	Limit    int // rows to fetch: the page's First plus one, to tell whether more follow
}

// CheckAuditQuery validates a ListAudit request and resolves its bounds and cursor.
func CheckAuditQuery(f AuditFilter, p Page) (AuditQuery, error) {
	if err := CheckPage(p); err != nil {
		return AuditQuery{}, err
	}
	if f.Action != "" && !ValidAuditAction(f.Action) {
		return AuditQuery{}, &ArgumentError{Arg: "action", Reason: fmt.Sprintf("unknown action %q", f.Action)}
	}
	q := AuditQuery{AuditFilter: f, BeforeAt: maxTime, BeforeID: maxID, Limit: p.First + 1}
	if q.Since.IsZero() {
		q.Since = minTime
	}
	if q.Until.IsZero() {
		q.Until = maxTime
	}
	q.Since, q.Until = StoredTime(q.Since), StoredTime(q.Until)
	if !q.Until.After(q.Since) {
		return AuditQuery{}, &ArgumentError{Arg: "until", Reason: fmt.Sprintf("%v is not after since, %v", f.Until, f.Since)}
	}
	if p.After != "" {
		c, err := decodeCursor(p.After, cursorAudit)
		if err != nil {
			return AuditQuery{}, err
		}
		q.BeforeAt, q.BeforeID = c.At, c.ID
	}
	return q, nil
}

// AuditCursor is the opaque cursor that resumes ListAudit after e.
func AuditCursor(e AuditEntry) string {
	return encodeCursor(cursor{Kind: cursorAudit, At: e.At, ID: e.ID})
}
