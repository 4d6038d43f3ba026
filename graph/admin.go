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
	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/store"
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

// backfillCaller says whose connections a requestBackfill may name: a service acting for
// no one may name any (charged to its own key), everyone else only the end user's own.
func (r *Resolver) backfillCaller(ctx context.Context, actAs *string, req *connection.BackfillRequest) (context.Context, string, error) {
	if actAs == nil {
		if c, err := auth.Caller(ctx); err == nil && c.Service {
			req.AnyOwner = true
			return ctx, c.ID, nil
		}
	}
	ctx, u, err := r.caller(ctx, actAs)
	req.Owner = u.ID
	return ctx, u.ID, err
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

func relayDelivery(d store.RelayDelivery) *model.RelayDelivery {
	return &model.RelayDelivery{
		ID:             strconv.FormatInt(d.ID, 10),
		Destination:    d.Destination,
		EventType:      d.EventType,
		WebhookID:      d.WebhookID,
		Status:         model.RelayDeliveryStatus(d.Status),
		Attempts:       d.Attempts,
		LastStatusCode: d.LastStatusCode,
		LastError:      optional(d.LastError),
		NextAttemptAt:  d.NextAttemptAt,
		DeliveredAt:    d.DeliveredAt,
		CreatedAt:      d.CreatedAt,
	}
}
