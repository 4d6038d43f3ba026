// Package audit says who an audit entry names: the caller in a request's context, as the
// domain services that record what callers did see it. The entries themselves, their
// checks and their storage are the store's.
package audit

import (
	"context"

	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/clientip"
	"github.com/terragate/terragate/internal/store"
)

// By is an entry with the actor of ctx filled in: the service when a service acts for an
// end user (actAs), else the caller, and the client's address when known. The caller's
// action, subject and time are the recording service's to add. With no caller in ctx the
// actor is empty, which the store refuses: nothing is recorded as done by nobody.
func By(ctx context.Context) store.AuditEntry {
	var e store.AuditEntry
	if actor, acting := auth.Actor(ctx); acting {
		e.Actor, e.ActorKind = actor.ID, store.ActorService
	} else if u, err := auth.Caller(ctx); err == nil {
		e.Actor, e.ActorKind = u.ID, store.ActorUser
		if u.Service {
			e.ActorKind = store.ActorService
		}
	}
	if ip, ok := clientip.FromContext(ctx); ok {
		e.ClientIP = ip.String()
	}
	return e
}
