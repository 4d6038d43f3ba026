package webhook

import (
	"fmt"
	"strings"

	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
)

// ToStoreEvent says what a Terra event means for the store.
func ToStoreEvent(ev terra.Event) store.Event {
	out := store.Event{
		Type:            ev.Type,
		User:            snapshot(ev.User),
		ReferenceID:     deref(ev.ReferenceID),
		WidgetSessionID: deref(ev.WidgetSessionID),
		FlowID:          deref(ev.FlowID),
		Provider:        strings.ToUpper(deref(ev.Provider)),
		Reason:          deref(ev.Reason),
	}
	status := strings.ToLower(deref(ev.Status))
	switch ev.Type {
	case terra.EventAuth:
		if status == "success" && ev.User != nil {
			out.Kind = store.EventAuthSuccess
		} else {
			out.Kind = store.EventAuthFailure
		}
	case terra.EventAuthCancelled:
		out.Kind = store.EventAuthFailure
	case terra.EventDeauth:
		out.Kind = store.EventDeauth
	case terra.EventAccessRevoked:
		out.Kind = store.EventAccessRevoked
	case terra.EventConnectionError:
		out.Kind = store.EventConnectionError
	case terra.EventPermissionChange:
		out.Kind = store.EventPermissionChange
		out.ScopesAdded = terra.SplitScopes(deref(ev.ScopesAdded))
		out.ScopesRemoved = terra.SplitScopes(deref(ev.ScopesRemoved))
	case terra.EventUserReauth:
		out.Kind = store.EventReauth
		out.User = snapshot(ev.NewUser)
		out.OldUser = snapshot(ev.OldUser)
	default:
		out.Kind = store.EventIgnored
	}
	if out.Kind != store.EventIgnored && out.Kind != store.EventAuthFailure && out.User == nil {
		// The decoder requires a user for these; be safe if it ever does not.
		out.Kind = store.EventIgnored
	}
	if out.Provider == "" && out.User != nil {
		out.Provider = out.User.Provider
	}
	if out.ReferenceID == "" && out.User != nil {
		out.ReferenceID = out.User.ReferenceID
	}
	return out
}

func snapshot(u *terra.User) *store.UserSnapshot {
	if u == nil || u.UserID == "" {
		return nil
	}
	return connection.SnapshotOf(*u)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(*s)
}

// Redelivery rebuilds a stored webhook delivery from its raw body, for replaying a dead
// letter with today's decoding and rules.
func Redelivery(e store.InboxEvent) (store.Delivery, error) {
	if e.Source != store.SourceWebhook {
		return store.Delivery{}, fmt.Errorf("inbox row %d came from %s, not a webhook: %w", e.ID, e.Source, store.ErrInvalid)
	}
	ev, err := terra.DecodeEvent(e.Body)
	if err != nil {
		return store.Delivery{}, fmt.Errorf("inbox row %d: %w", e.ID, err)
	}
	return store.Delivery{
		DedupeKey:  e.DedupeKey,
		TraceID:    e.TraceID,
		Source:     e.Source,
		SignedAt:   e.SignedAt,
		ReceivedAt: e.ReceivedAt,
		Body:       e.Body,
		Event:      ToStoreEvent(ev),
	}, nil
}
