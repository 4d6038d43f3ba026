package core

import (
	"context"
	"fmt"

	"github.com/terragate/terragate/internal/store"
)

// AppendAudit adds an entry to the audit log; what store.CheckAudit refuses is
// store.ErrInvalid.
func (c *Store[U, S, E, A, L, D, R]) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	e, err := store.CheckAudit(e, c.now())
	if err != nil {
		return err
	}
	err = c.write.InsertAuditEntry(ctx, e.At, e.Actor, e.ActorKind, e.Action, e.Subject, e.ReferenceID, e.ClientIP,
		c.rows.Detail(store.AuditDetailJSON(e.Detail)))
	return c.wrap(ctx, fmt.Sprintf("append audit %q", e.Action), err)
}

// ListAudit returns a page of the audit log, newest first, led by the most selective filter
// given (end user, actor, action) so that its index serves the page.
func (c *Store[U, S, E, A, L, D, R]) ListAudit(ctx context.Context, f store.AuditFilter, p store.Page) (store.AuditPage, error) {
	q, err := store.CheckAuditQuery(f, p)
	if err != nil {
		return store.AuditPage{}, err
	}
	list := c.read.ListAuditEntries
	switch {
	case q.ReferenceID != "":
		list = c.read.ListAuditEntriesByReference
	case q.Actor != "":
		list = c.read.ListAuditEntriesByActor
	case q.Action != "":
		list = c.read.ListAuditEntriesByAction
	}
	rows, err := list(ctx, q.Since, q.Until, q.BeforeAt, q.BeforeID, q.ReferenceID, q.Actor, q.Action, int64(q.Limit))
	if err != nil {
		return store.AuditPage{}, c.wrap(ctx, "list audit", err)
	}
	entries := make([]store.AuditEntry, 0, len(rows))
	for _, r := range rows {
		e, err := c.audit(r)
		if err != nil {
			return store.AuditPage{}, fmt.Errorf("%s: list audit: entry %d: %w", c.name, c.rows.Audit(r).ID, err)
		}
		entries = append(entries, e)
	}
	var out store.AuditPage
	out.Entries, out.EndCursor, out.HasNextPage = store.PageOf(entries, p, store.AuditCursor)
	return out, nil
}

// ListTerraUsersPage returns a page of the Terra users matching the filter and their total
// count, read in one transaction so that both see the same rows; for one end user, over its
// index.
func (c *Store[U, S, E, A, L, D, R]) ListTerraUsersPage(ctx context.Context, f store.UserFilter, p store.Page) (store.UserPage, error) {
	q, err := store.CheckUserQuery(f, p)
	if err != nil {
		return store.UserPage{}, err
	}
	var rows []U
	var total int64
	status, limit := string(q.Status), int64(q.Limit)
	err = c.e.InReadTx(ctx, func(tx Queries[U, S, E, A, L, D, R]) error {
		var err error
		if q.ReferenceID != "" {
			rows, err = tx.ListTerraUsersPageByReference(ctx, q.ReferenceID, q.AfterAt, q.AfterUserID, q.Provider, status, limit)
			if err == nil {
				total, err = tx.CountTerraUsersByReference(ctx, q.ReferenceID, q.Provider, status)
			}
			return err
		}
		rows, err = tx.ListTerraUsersPage(ctx, q.AfterAt, q.AfterUserID, q.Provider, status, limit)
		if err == nil {
			total, err = tx.CountTerraUsers(ctx, q.Provider, status)
		}
		return err
	})
	if err != nil {
		return store.UserPage{}, c.wrap(ctx, "list terra users page", err)
	}
	out := store.UserPage{TotalCount: int(total)}
	out.Users, out.EndCursor, out.HasNextPage = store.PageOf(c.users(rows), p, store.UserCursor)
	return out, nil
}

// ListWebhookEvents returns a page of the inbox, newest first, over the dead letters' index
// when they are asked for, else led by the event type when one is given, so that an index
// serves the page.
func (c *Store[U, S, E, A, L, D, R]) ListWebhookEvents(ctx context.Context, f store.InboxFilter, p store.Page) (store.InboxPage, error) {
	q, err := store.CheckInboxQuery(f, p)
	if err != nil {
		return store.InboxPage{}, err
	}
	source, limit := string(q.Source), int64(q.Limit)
	var rows []E
	switch {
	case store.InboxOutcome(q.Outcome) == store.InboxFailed:
		rows, err = c.read.ListDeadLettersPage(ctx, q.BeforeID, q.Type, source, limit)
	case q.Type != "":
		rows, err = c.read.ListWebhookEventsPageByType(ctx, q.BeforeID, q.Type, source, q.Outcome, limit)
	default:
		rows, err = c.read.ListWebhookEventsPage(ctx, q.BeforeID, q.Type, source, q.Outcome, limit)
	}
	if err != nil {
		return store.InboxPage{}, c.wrap(ctx, "list webhook events", err)
	}
	var out store.InboxPage
	out.Events, out.EndCursor, out.HasNextPage = store.PageOf(c.events(rows), p, store.InboxCursor)
	return out, nil
}
