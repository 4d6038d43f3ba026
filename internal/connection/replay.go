package connection

import (
	"context"
	"errors"
	"strconv"

	"github.com/terragate/terragate/internal/fault"
	"github.com/terragate/terragate/internal/store"
)

// ReplayError is a replay that failed again; the delivery stays a dead letter.
type ReplayError struct{ Reason string }

func (e *ReplayError) Error() string { return e.Reason }

// Kind is fault.ReplayFailed.
func (e *ReplayError) Kind() fault.Kind { return fault.ReplayFailed }

// Replay applies the dead letter id again, decoded anew from its stored body by today's
// rules, tells subscribers what changed, and returns the inbox row as it is afterwards.
// entry (who asked) is stored as a webhook.replay with the replay's outcome, in the
// transaction that records it. A replay that cannot run (an unknown id, a row that is not a
// dead letter) records nothing: nothing happened.
func (s *Service) Replay(ctx context.Context, id int64, entry store.AuditEntry) (store.InboxEvent, error) {
	e, err := s.store.WebhookEvent(ctx, id)
	if err != nil {
		return store.InboxEvent{}, err
	}
	entry.Action = store.ActionWebhookReplay
	entry.Subject = strconv.FormatInt(id, 10)
	if entry.At.IsZero() {
		entry.At = s.now().UTC()
	}
	d, err := s.mapping.redelivery(e)
	if err != nil && e.Outcome == store.InboxFailed {
		// Today's decoding still fails: the store changes nothing, so the entry stands alone.
		entry.Detail = map[string]string{store.ReplayOutcomeKey: store.ReplayFailed}
		if aerr := s.store.AppendAudit(ctx, entry); aerr != nil {
			s.log.ErrorContext(ctx, "audit entry not recorded", "action", entry.Action, "err", aerr)
		}
	}
	if err == nil {
		d.Audit = s.auditFor(store.SourceOf(d), d.Event)
		var out store.Outcome
		if out, err = s.store.ReplayDeadLetter(ctx, id, d, entry); err == nil {
			s.publish(ctx, d.Event.Kind, out)
		}
	}
	if err != nil {
		if !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
			return store.InboxEvent{}, &ReplayError{Reason: "the event still cannot be applied"}
		}
		return store.InboxEvent{}, err
	}
	return s.store.WebhookEvent(ctx, id)
}
