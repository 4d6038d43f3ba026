package terrasim

import (
	"errors"
	"slices"
	"strings"

	"github.com/terragate/terragate/internal/terra"
)

// ErrUnknownUser is returned by the controls for a user_id the emulator does not hold.
var ErrUnknownUser = errors.New("terrasim: unknown user")

// Users returns every Terra user, oldest connection first.
func (e *Emulator) Users() []terra.User {
	e.mu.Lock()
	defer e.mu.Unlock()
	recs := make([]*userRecord, 0, len(e.users))
	for _, r := range e.users {
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b *userRecord) int { return a.seq - b.seq })
	out := make([]terra.User, len(recs))
	for i, r := range recs {
		out[i] = r.user
	}
	return out
}

func (e *Emulator) user(id string) (terra.User, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.users[id]
	if !ok {
		return terra.User{}, false
	}
	return r.user, true
}

// User records are copied out by value, so their pointer fields are always replaced,
// never written through.

// touchLocked stamps last_webhook_update on a user about to appear in an event and
// returns the current record.
func (e *Emulator) touchLocked(id string) terra.User {
	r := e.users[id]
	now := e.now().UTC().Format(terra.TimeFormat)
	r.user.LastWebhookUpdate = &now
	return r.user
}

// Connect creates a connection directly, as if the end user had finished the widget for
// provider, and sends the auth webhook (without a widget_session_id). referenceID may
// be empty.
func (e *Emulator) Connect(providerCode, referenceID string) (terra.User, error) {
	p, ok := lookupProvider(cloudProviders, providerCode)
	if !ok {
		return terra.User{}, ErrUnknownProvider
	}
	var ref *string
	if referenceID != "" {
		ref = &referenceID
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.connectLocked(p.Code, ref), nil
}

// connectLocked adds a Terra user for provider and sends the auth webhook Terra sends for a
// connection made outside a widget session (a control, or a phone through the SDK).
func (e *Emulator) connectLocked(provider string, ref *string) terra.User {
	u := e.addUserLocked(provider, ref)
	u = e.touchLocked(u.UserID)
	e.emitLocked(map[string]any{
		"type":              terra.EventAuth,
		"status":            terra.StatusSuccess,
		"user":              u,
		"reference_id":      ref,
		"widget_session_id": nil,
		"message":           "User has successfully authenticated",
		"version":           eventVersion,
	})
	return u
}

// Deauth disconnects a user as the provider side would (and as deauthenticateUser
// does): the user is removed and a deauth webhook follows.
func (e *Emulator) Deauth(userID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.users[userID]; !ok {
		return ErrUnknownUser
	}
	u := e.touchLocked(userID)
	delete(e.users, userID)
	e.emitLocked(map[string]any{
		"type":    terra.EventDeauth,
		"status":  terra.StatusSuccess,
		"user":    u,
		"message": "User has deauthenticated",
	})
	return nil
}

// Reauth plays the end user connecting the same provider account again: Terra issues a
// new user_id, deletes the old one and sends user_reauth with new_user and old_user.
func (e *Emulator) Reauth(userID string) (terra.User, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.users[userID]
	if !ok {
		return terra.User{}, ErrUnknownUser
	}
	old := e.touchLocked(userID)
	delete(e.users, userID)
	nu := e.addUserLocked(old.Provider, old.ReferenceID)
	e.users[nu.UserID].user.Scopes = old.Scopes
	e.users[nu.UserID].seq = r.seq // the account keeps its place in listings
	nu = e.touchLocked(nu.UserID)
	e.emitLocked(map[string]any{
		"type":     terra.EventUserReauth,
		"status":   terra.StatusWarning,
		"new_user": nu,
		"old_user": old,
		"message":  "User has reauthenticated",
		"version":  eventVersion,
	})
	return nu, nil
}

// RevokeAccess plays the end user revoking Terra's access at the provider: the user
// turns inactive and access_revoked is sent.
func (e *Emulator) RevokeAccess(userID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.users[userID]
	if !ok {
		return ErrUnknownUser
	}
	inactive := false
	r.user.Active = &inactive
	e.emitLocked(map[string]any{
		"type":    terra.EventAccessRevoked,
		"status":  terra.StatusWarning,
		"user":    e.touchLocked(userID),
		"message": "User has revoked access at the provider",
	})
	return nil
}

// ConnectionError plays the provider rejecting Terra's token (often transient): a
// connection_error event is sent and the user is left as it is.
func (e *Emulator) ConnectionError(userID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.users[userID]; !ok {
		return ErrUnknownUser
	}
	e.emitLocked(map[string]any{
		"type":    terra.EventConnectionError,
		"status":  terra.StatusWarning,
		"user":    e.touchLocked(userID),
		"message": "The provider rejected Terra's access token; the user may need to reconnect",
	})
	return nil
}

// ChangePermissions plays the end user changing the scopes granted at the provider:
// the user's scopes are updated and permission_change is sent with scopes_added and
// scopes_removed comma-separated.
func (e *Emulator) ChangePermissions(userID string, added, removed []string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.users[userID]
	if !ok {
		return ErrUnknownUser
	}
	added, removed = trimScopes(added), trimScopes(removed)
	var current []string
	if r.user.Scopes != nil {
		current = terra.SplitScopes(*r.user.Scopes)
	}
	current = slices.DeleteFunc(current, func(s string) bool { return slices.Contains(removed, s) })
	for _, s := range added {
		if !slices.Contains(current, s) {
			current = append(current, s)
		}
	}
	scopes := strings.Join(current, ",")
	r.user.Scopes = &scopes
	e.emitLocked(map[string]any{
		"type":           terra.EventPermissionChange,
		"status":         terra.StatusWarning,
		"user":           e.touchLocked(userID),
		"message":        "User permissions changed",
		"version":        eventVersion,
		"scopes_added":   strings.Join(added, ","),
		"scopes_removed": strings.Join(removed, ","),
	})
	return nil
}

func trimScopes(in []string) []string {
	return terra.SplitScopes(strings.Join(in, ","))
}
