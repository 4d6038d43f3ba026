package graph

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/terragate/terragate/graph/model"
	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/clientip"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/webhook"
)

// caller is who an operation is for: the signed-in end user, or the end user a service
// caller acts for (actAs). actAs from anyone but a service is FORBIDDEN; a service caller
// must name the end user, since an operation on "the service's own connections" means
// nothing.
func (r *Resolver) caller(ctx context.Context, actAs *string) (context.Context, auth.User, error) {
	if actAs != nil {
		acting, err := auth.ActAs(ctx, *actAs)
		if err != nil {
			return ctx, auth.User{}, err
		}
		u, err := auth.Require(acting)
		return acting, u, err
	}
	u, err := auth.Require(ctx)
	if errors.Is(err, auth.ErrForbidden) {
		if c, cerr := auth.Caller(ctx); cerr == nil && c.Service {
			return ctx, auth.User{}, fmt.Errorf("%w: service callers name the end user with actAs", auth.ErrForbidden)
		}
	}
	return ctx, u, err
}

// audit appends an entry for what the caller did. The entry is evidence, not part of the
// operation: a failure to record it is logged, and the operation still answers.
func (r *Resolver) audit(ctx context.Context, action, subject, referenceID string, detail map[string]string) {
	e := r.auditEntry(ctx, action, subject, referenceID, detail)
	if err := r.Store.AppendAudit(ctx, e); err != nil {
		r.Log.ErrorContext(ctx, "audit entry not recorded", "action", action, "err", err)
	}
}

// auditEntry is the audit entry of an action by the caller in ctx, for audit or for a
// store call that records it in its own transaction.
func (r *Resolver) auditEntry(ctx context.Context, action, subject, referenceID string, detail map[string]string) store.AuditEntry {
	e := store.AuditEntry{At: r.now(), Action: action, Subject: subject, ReferenceID: referenceID, Detail: detail}
	switch actor, acting := auth.Actor(ctx); {
	case acting:
		e.Actor, e.ActorKind = actor.ID, store.ActorService
	default:
		if u, err := auth.Caller(ctx); err == nil {
			e.Actor, e.ActorKind = u.ID, store.ActorUser
			if u.Service {
				e.ActorKind = store.ActorService
			}
		}
	}
	if ip, ok := clientip.FromContext(ctx); ok {
		e.ClientIP = ip.String()
	}
	return e
}

// admin lets service callers through, and records the read.
func (r *Resolver) admin(ctx context.Context, query string, filters map[string]string) error {
	if _, err := auth.RequireService(ctx); err != nil {
		return err
	}
	detail := map[string]string{}
	for k, v := range filters {
		if v != "" {
			detail[k] = v
		}
	}
	r.audit(ctx, store.ActionAdminRead, query, "", detail)
	return nil
}

// replay applies the dead letter id again, decoded anew from its body, and audits it as a
// webhook.replay with its outcome, stored with the replay's result. A replay that cannot
// run (an unknown id, a row that is not a dead letter) is not recorded: nothing happened.
func (r *Resolver) replay(ctx context.Context, id int64) error {
	e, err := r.Store.WebhookEvent(ctx, id)
	if err != nil {
		return err
	}
	entry := r.auditEntry(ctx, store.ActionWebhookReplay, strconv.FormatInt(id, 10), "", nil)
	d, err := webhook.Redelivery(e)
	if err != nil && e.Outcome == store.InboxFailed {
		// Today's decoding still fails: the store changes nothing, so the entry stands alone.
		entry.Detail = map[string]string{store.ReplayOutcomeKey: store.ReplayFailed}
		if aerr := r.Store.AppendAudit(ctx, entry); aerr != nil {
			r.Log.ErrorContext(ctx, "audit entry not recorded", "action", entry.Action, "err", aerr)
		}
	}
	if err == nil {
		_, err = r.Connections.ReplayDeadLetter(ctx, id, d, entry)
	}
	if err != nil && !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
		return &ReplayError{Reason: "the event still cannot be applied"}
	}
	return err
}

func page(first *int, after *string) store.Page {
	p := store.Page{First: 20, After: value(after)}
	if first != nil {
		p.First = *first
	}
	return p
}

func pageInfo(end string, more bool) *model.PageInfo {
	return &model.PageInfo{HasNextPage: more, EndCursor: optional(end)}
}

// ReplayError is a replay that failed again; the delivery stays a dead letter.
type ReplayError struct{ Reason string }

func (e *ReplayError) Error() string { return e.Reason }

func inboxEvent(e store.InboxEvent) *model.WebhookEvent {
	return &model.WebhookEvent{
		Error:      optional(e.Error),
		Replays:    e.Replays,
		ReplayedAt: e.ReplayedAt,
		ID:         strconv.FormatInt(e.ID, 10),
		Source:     string(e.Source),
		TraceID:    optional(e.TraceID),
		Type:       e.Type,
		SignedAt:   e.SignedAt,
		ReceivedAt: e.ReceivedAt,
		AppliedAt:  e.AppliedAt,
		Outcome:    optional(string(e.Outcome)),
		Body:       string(e.Body),
	}
}

func auditEntry(e store.AuditEntry) *model.AuditEntry {
	out := &model.AuditEntry{
		ID:          strconv.FormatInt(e.ID, 10),
		At:          e.At,
		Actor:       e.Actor,
		ActorKind:   e.ActorKind,
		Action:      e.Action,
		Subject:     optional(e.Subject),
		ReferenceID: optional(e.ReferenceID),
		ClientIP:    optional(e.ClientIP),
		Detail:      []*model.AuditDetail{},
	}
	for k, v := range e.Detail {
		out.Detail = append(out.Detail, &model.AuditDetail{Key: k, Value: v})
	}
	slices.SortFunc(out.Detail, func(a, b *model.AuditDetail) int { return strings.Compare(a.Key, b.Key) })
	return out
}
