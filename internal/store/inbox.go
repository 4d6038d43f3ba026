package store

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// InboxOutcome is what applying a delivery did, as recorded on its inbox row.
type InboxOutcome string

// Inbox outcomes.
const (
	InboxApplied   InboxOutcome = "applied"   // some row changed
	InboxUnchanged InboxOutcome = "unchanged" // applied, but older or repeated news: no change
	InboxIgnored   InboxOutcome = "ignored"   // an event kind the store does not apply
	// InboxFailed marks a dead letter: a delivery the store refused for a reason retrying
	// will not fix (ErrInvalid). Nothing of it is applied, nothing behind it waits for it,
	// and ReplayDeadLetter may apply it once the cause is fixed.
	InboxFailed InboxOutcome = "failed"
)

// Valid reports whether o is one of the inbox outcomes.
func (o InboxOutcome) Valid() bool {
	switch o {
	case InboxApplied, InboxUnchanged, InboxIgnored, InboxFailed:
		return true
	}
	return false
}

// OutcomeOf names what a delivery's changes amount to, for its inbox row.
func OutcomeOf(kind EventKind, ch Changes) InboxOutcome {
	switch {
	case kind == EventIgnored:
		return InboxIgnored
	case ch.Empty():
		return InboxUnchanged
	}
	return InboxApplied
}

// Valid reports whether s is a known source. Empty is valid: it means SourceWebhook.
func (s DeliverySource) Valid() bool {
	switch s {
	case "", SourceWebhook, SourceRedirect, SourceAPI, SourceSync:
		return true
	}
	return false
}

// SourceOf is the delivery's source as engines record it: SourceWebhook when unset, so that
// the webhook handler need not say.
func SourceOf(d Delivery) DeliverySource {
	if d.Source == "" {
		return SourceWebhook
	}
	return d.Source
}

// InboxEvent is one delivery as kept in the inbox.
type InboxEvent struct {
	ID         int64 // increasing in the order deliveries were recorded
	DedupeKey  string
	Source     DeliverySource // never empty
	TraceID    string
	Type       string
	Kind       EventKind
	SignedAt   time.Time
	ReceivedAt time.Time
	Body       []byte
	AppliedAt  *time.Time   // nil until applied, and while a dead letter
	Outcome    InboxOutcome // empty until applied; InboxFailed for a dead letter
	// Error says why a dead letter failed (its latest attempt); empty for any other row.
	Error string
	// ReplayedAt is when ReplayDeadLetter last ran on the row, whether it applied it or
	// not; nil if it never did.
	ReplayedAt *time.Time
	Replays    int // how many times ReplayDeadLetter ran on the row
}

// MaxErrorLen bounds a dead letter's Error, in bytes: it is a short reason for operators, not
// a log.
const MaxErrorLen = 500

// ErrorText is reason as a dead letter keeps it: valid UTF-8 without control characters
// (which text columns or logs could choke on), trimmed, and cut at a character boundary to
// at most MaxErrorLen bytes. Callers still decide what goes in: it must hold no secrets.
func ErrorText(reason string) string {
	reason = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return ' '
		case r < ' ' || r == 0x7f:
			return -1
		}
		return r
	}, strings.ToValidUTF8(reason, "\uFFFD"))
	reason = strings.TrimSpace(reason)
	if len(reason) <= MaxErrorLen {
		return reason
	}
	const ellipsis = "…"
	cut := MaxErrorLen - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut] + ellipsis
}

// CheckDeadLetter validates a delivery about to be kept as a dead letter and returns the
// reason as stored (see ErrorText). It asks less than CheckDelivery: an event kind this build
// does not know may be the very bug that makes the delivery a dead letter. The delivery still
// needs what identifies and orders it, and a reason.
func CheckDeadLetter(d Delivery, reason string) (string, error) {
	if d.DedupeKey == "" {
		return "", fmt.Errorf("dead letter: empty dedupe key: %w", ErrInvalid)
	}
	if d.SignedAt.IsZero() {
		return "", fmt.Errorf("dead letter %q: no signed time: %w", d.DedupeKey, ErrInvalid)
	}
	if !d.Source.Valid() {
		return "", fmt.Errorf("dead letter %q: source %q: %w", d.DedupeKey, d.Source, ErrInvalid)
	}
	if d.Event.Kind == "" {
		return "", fmt.Errorf("dead letter %q: no event kind: %w", d.DedupeKey, ErrInvalid)
	}
	reason = ErrorText(reason)
	if reason == "" {
		return "", fmt.Errorf("dead letter %q: no reason: %w", d.DedupeKey, ErrInvalid)
	}
	return reason, nil
}

// CheckReplay checks that d may be replayed on the dead letter e: e is a dead letter
// (ErrConflict otherwise: it was applied, perhaps by a replay that just ran), and d is the
// same delivery, by dedupe key and source (ErrInvalid otherwise), so that a replay cannot
// land on another delivery's row. d's event is the caller's decoding, which may differ from
// the first one: that is what a replay is for.
func CheckReplay(e InboxEvent, d Delivery) error {
	if e.Outcome != InboxFailed {
		return fmt.Errorf("inbox event %d: outcome %q, not a dead letter: %w", e.ID, e.Outcome, ErrConflict)
	}
	if d.DedupeKey != e.DedupeKey || SourceOf(d) != e.Source {
		return fmt.Errorf("inbox event %d: replayed with delivery %q from %s; want %q from %s: %w",
			e.ID, d.DedupeKey, SourceOf(d), e.DedupeKey, e.Source, ErrInvalid)
	}
	return nil
}
