package connection

// This file is the whole mapping from Terra's terms to the store's: the events Terra's
// webhooks carry, the users its API returns, and a stored webhook body read again for a
// replay.

import (
	"fmt"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
)

// DecodeEvent reads a webhook body Terra signed and says what it means for the store. The
// webhook handler is given it, so that it knows Terra's signatures but not its events.
func DecodeEvent(body []byte) (store.Event, error) {
	ev, err := terra.DecodeEvent(body)
	if err != nil {
		return store.Event{}, err
	}
	return EventOf(ev), nil
}

// EventOf says what a Terra event means for the store.
func EventOf(ev terra.Event) store.Event {
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
	return terraSnapshot(*u)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(*s)
}

// redelivery rebuilds a stored webhook delivery from its raw body, for replaying a dead
// letter with today's decoding and rules.
func redelivery(e store.InboxEvent) (store.Delivery, error) {
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
		Event:      EventOf(ev),
	}, nil
}

// terraSnapshot is a Terra user in the store's terms.
func terraSnapshot(u terra.User) *store.UserSnapshot {
	snap := &store.UserSnapshot{UserID: u.UserID, Provider: strings.ToUpper(u.Provider), Active: u.Active}
	if u.ReferenceID != nil && *u.ReferenceID != "null" {
		snap.ReferenceID = strings.TrimSpace(*u.ReferenceID)
	}
	if u.Scopes != nil {
		snap.Scopes = terra.SplitScopes(*u.Scopes)
		if snap.Scopes == nil {
			snap.Scopes = []string{}
		}
	}
	snap.CreatedAt = parseTime(u.CreatedAt)
	snap.LastWebhookUpdate = parseTime(u.LastWebhookUpdate)
	return snap
}

func parseTime(s *string) *time.Time {
	if s == nil {
		return nil
	}
	t, ok := terra.ParseTime(*s)
	if !ok {
		return nil
	}
	return &t
}
