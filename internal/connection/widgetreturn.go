package connection

import (
	"context"
	"encoding/json"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
)

// ConfirmReturn applies what a widget return taught terragate once Terra confirmed it: u,
// Terra's user, connected for the session's end user. It goes through the same rules and
// inbox as Terra's webhooks, so whichever of the two comes first settles the session.
func (s *Service) ConfirmReturn(ctx context.Context, sess store.WidgetSession, u terra.User) (store.Outcome, error) {
	return s.ApplyWebhook(ctx, s.returnDelivery(sess.ID, store.Event{
		Kind:            store.EventAuthSuccess,
		Type:            terra.EventAuth,
		User:            s.mapping.snapshotOf(u),
		ReferenceID:     sess.ReferenceID,
		WidgetSessionID: sess.ID,
	}))
}

// FailReturn applies a failure the widget reported on its return (the end user cancelled,
// or the provider refused): the session fails, with reason.
func (s *Service) FailReturn(ctx context.Context, sess store.WidgetSession, provider, reason string) (store.Outcome, error) {
	return s.ApplyWebhook(ctx, s.returnDelivery(sess.ID, store.Event{
		Kind:            store.EventAuthFailure,
		Type:            terra.EventAuthCancelled,
		ReferenceID:     sess.ReferenceID,
		WidgetSessionID: sess.ID,
		Provider:        provider,
		Reason:          reason,
	}))
}

// returnDelivery wraps what a widget return taught terragate for the store's rules and inbox.
func (s *Service) returnDelivery(sessionID string, ev store.Event) store.Delivery {
	at := s.now().UTC()
	body, _ := json.Marshal(map[string]any{"source": store.SourceRedirect, "type": ev.Type, "session_id": sessionID, "user": ev.User})
	return store.Delivery{
		DedupeKey:  "redirect:" + sessionID,
		Source:     store.SourceRedirect,
		SignedAt:   at,
		ReceivedAt: at,
		Body:       body,
		Event:      ev,
	}
}

// List is the end user's connections, the inactive ones too when asked.
func (s *Service) List(ctx context.Context, referenceID string, includeInactive bool) ([]store.TerraUser, error) {
	return s.store.ListTerraUsers(ctx, referenceID, includeInactive)
}

// Get is one of the end user's connections, replaced ones included (an event about a
// reconnection names the old one); anyone else's is ErrNotFound, exactly like an unknown id.
func (s *Service) Get(ctx context.Context, referenceID, userID string) (store.TerraUser, error) {
	u, err := s.store.TerraUser(ctx, userID)
	if err == nil && u.ReferenceID != referenceID {
		return store.TerraUser{}, ErrNotFound
	}
	return u, err
}
