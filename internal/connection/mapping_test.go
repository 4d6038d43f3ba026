package connection_test

import (
	"strings"
	"testing"

	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
)

func TestEventOf(t *testing.T) {
	str := func(s string) *string { return &s }
	u := &terra.User{UserID: "u", Provider: "oura", ReferenceID: str("alice"), Scopes: str("a, b,,c")}
	cases := []struct {
		ev   terra.Event
		kind store.EventKind
	}{
		{terra.Event{Type: "auth", Status: str("success"), User: u}, store.EventAuthSuccess},
		{terra.Event{Type: "auth", Status: str("error"), Reason: str("x")}, store.EventAuthFailure},
		{terra.Event{Type: "auth_cancelled", Status: str("error")}, store.EventAuthFailure},
		{terra.Event{Type: "deauth", Status: str("success"), User: u}, store.EventDeauth},
		{terra.Event{Type: "access_revoked", Status: str("warning"), User: u}, store.EventAccessRevoked},
		{terra.Event{Type: "connection_error", Status: str("warning"), User: u}, store.EventConnectionError},
		{terra.Event{Type: "permission_change", Status: str("warning"), User: u, ScopesAdded: str("x")}, store.EventPermissionChange},
		{terra.Event{Type: "user_reauth", Status: str("warning"), NewUser: u}, store.EventReauth},
		{terra.Event{Type: "deauth", Status: str("success")}, store.EventIgnored}, // no user: nothing to apply
		{terra.Event{Type: "sleep", Status: str("success")}, store.EventIgnored},
	}
	for _, c := range cases {
		got := connection.NewMapping(nil, nil).EventOf(c.ev)
		if got.Kind != c.kind {
			t.Errorf("%s/%s: kind %s, want %s", c.ev.Type, *c.ev.Status, got.Kind, c.kind)
		}
	}
	got := connection.NewMapping(nil, nil).EventOf(cases[0].ev)
	if got.User.Provider != "OURA" || strings.Join(got.User.Scopes, "|") != "a|b|c" || got.ReferenceID != "alice" {
		t.Errorf("snapshot = %+v", got.User)
	}
}
