package store

import (
	"context"
	"time"
)

// InboxOutcome is what applying a delivery did, as recorded on its inbox row.
type InboxOutcome string

// Inbox outcomes.
const (
	InboxApplied   InboxOutcome = "applied"   // some row changed
	InboxUnchanged InboxOutcome = "unchanged" // applied, but older or repeated news: no change
	InboxIgnored   InboxOutcome = "ignored"   // an event kind the store does not apply
)

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
	AppliedAt  *time.Time   // nil until applied
	Outcome    InboxOutcome // empty until applied
}

// Inbox reads the webhook inbox, for operators and the conformance suite. Engines implement
// it beside Store; it is kept out of Store so that fakes of Store need not.
type Inbox interface {
	// InboxEvents returns up to limit deliveries with an ID above afterID, oldest first.
	InboxEvents(ctx context.Context, afterID int64, limit int) ([]InboxEvent, error)
}
