package audit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/clientip"
	"github.com/terragate/terragate/internal/store"
)

func TestBy(t *testing.T) {
	user := auth.WithUser(context.Background(), auth.User{ID: "alice"})
	service := auth.WithUser(context.Background(), auth.User{ID: "svc:backend", Service: true})
	acting, err := auth.ActAs(service, "bob")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		ctx       context.Context
		actor     string
		actorKind string
	}{
		{"an end user", user, "alice", store.ActorUser},
		{"a service", service, "svc:backend", store.ActorService},
		{"a service acting for an end user names the service", acting, "svc:backend", store.ActorService},
		{"nobody", context.Background(), "", ""},
	}
	for _, tt := range tests {
		e := By(tt.ctx)
		if e.Actor != tt.actor || e.ActorKind != tt.actorKind {
			t.Errorf("%s: actor %q kind %q, want %q %q", tt.name, e.Actor, e.ActorKind, tt.actor, tt.actorKind)
		}
	}
	if _, err := store.CheckAudit(store.AuditEntry{Action: store.ActionAdminRead, Actor: By(context.Background()).Actor}, time.Now()); err == nil {
		t.Error("an entry by nobody passed the store's check")
	}

	// The client's address, as clientip.Into records it.
	var got store.AuditEntry
	h := clientip.Into(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = By(r.Context()) }))
	r := httptest.NewRequest(http.MethodPost, "/graphql", nil)
	r.RemoteAddr = "192.0.2.7:4567"
	h.ServeHTTP(httptest.NewRecorder(), r)
	if got.ClientIP != "192.0.2.7" {
		t.Errorf("client ip %q, want 192.0.2.7", got.ClientIP)
	}
}
