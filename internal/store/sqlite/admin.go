package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/sqlite/sqlitedb"
)

// AppendAudit adds an entry to the audit log; what store.CheckAudit refuses is
// store.ErrInvalid.
func (d *DB) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	e, err := store.CheckAudit(e, d.now())
	if err != nil {
		return err
	}
	err = d.wq.InsertAuditEntry(ctx, auditParams(e))
	return wrap(ctx, fmt.Sprintf("append audit %q", e.Action), err)
}

// auditParams is a checked entry as its row.
func auditParams(e store.AuditEntry) sqlitedb.InsertAuditEntryParams {
	return sqlitedb.InsertAuditEntryParams{
		At:          e.At,
		Actor:       e.Actor,
		ActorKind:   e.ActorKind,
		Action:      e.Action,
		Subject:     e.Subject,
		ReferenceID: e.ReferenceID,
		ClientIP:    e.ClientIP,
		Detail:      string(store.AuditDetailJSON(e.Detail)),
	}
}

// ListAudit returns a page of the audit log, newest first, led by the most selective filter
// given (end user, actor, action) so that its index serves the page.
func (d *DB) ListAudit(ctx context.Context, f store.AuditFilter, p store.Page) (store.AuditPage, error) {
	q, err := store.CheckAuditQuery(f, p)
	if err != nil {
		return store.AuditPage{}, err
	}
	arg := sqlitedb.ListAuditEntriesParams{
		Since:       q.Since,
		Until:       q.Until,
		BeforeAt:    q.BeforeAt,
		BeforeID:    q.BeforeID,
		ReferenceID: q.ReferenceID,
		Actor:       q.Actor,
		Action:      q.Action,
		MaxRows:     int64(q.Limit),
	}
	var rows []sqlitedb.AuditLog
	switch {
	case q.ReferenceID != "":
		rows, err = d.rq.ListAuditEntriesByReference(ctx, sqlitedb.ListAuditEntriesByReferenceParams(arg))
	case q.Actor != "":
		rows, err = d.rq.ListAuditEntriesByActor(ctx, sqlitedb.ListAuditEntriesByActorParams(arg))
	case q.Action != "":
		rows, err = d.rq.ListAuditEntriesByAction(ctx, sqlitedb.ListAuditEntriesByActionParams(arg))
	default:
		rows, err = d.rq.ListAuditEntries(ctx, arg)
	}
	if err != nil {
		return store.AuditPage{}, wrap(ctx, "list audit", err)
	}
	entries := make([]store.AuditEntry, 0, len(rows))
	for _, r := range rows {
		e, err := auditFromRow(r)
		if err != nil {
			return store.AuditPage{}, fmt.Errorf("sqlite: list audit: entry %d: %w", r.ID, err)
		}
		entries = append(entries, e)
	}
	var out store.AuditPage
	out.Entries, out.EndCursor, out.HasNextPage = store.PageOf(entries, p, store.AuditCursor)
	return out, nil
}

// ListTerraUsersPage returns a page of the Terra users matching the filter and their total
// count, read in one transaction so that both see the same rows.
func (d *DB) ListTerraUsersPage(ctx context.Context, f store.UserFilter, p store.Page) (store.UserPage, error) {
	q, err := store.CheckUserQuery(f, p)
	if err != nil {
		return store.UserPage{}, err
	}
	var rows []sqlitedb.TerraUser
	var total int64
	err = d.inReadTx(ctx, func(tx *sqlitedb.Queries) error {
		var err error
		arg := sqlitedb.ListTerraUsersPageByReferenceParams{
			ReferenceID: q.ReferenceID,
			AfterAt:     q.AfterAt,
			AfterUserID: q.AfterUserID,
			Provider:    q.Provider,
			Status:      string(q.Status),
			MaxRows:     int64(q.Limit),
		}
		if q.ReferenceID != "" {
			rows, err = tx.ListTerraUsersPageByReference(ctx, arg)
			if err == nil {
				total, err = tx.CountTerraUsersByReference(ctx, sqlitedb.CountTerraUsersByReferenceParams{
					ReferenceID: arg.ReferenceID, Provider: arg.Provider, Status: arg.Status,
				})
			}
			return err
		}
		rows, err = tx.ListTerraUsersPage(ctx, sqlitedb.ListTerraUsersPageParams{
			AfterAt:     arg.AfterAt,
			AfterUserID: arg.AfterUserID,
			Provider:    arg.Provider,
			Status:      arg.Status,
			MaxRows:     arg.MaxRows,
		})
		if err == nil {
			total, err = tx.CountTerraUsers(ctx, sqlitedb.CountTerraUsersParams{Provider: arg.Provider, Status: arg.Status})
		}
		return err
	})
	if err != nil {
		return store.UserPage{}, wrap(ctx, "list terra users page", err)
	}
	out := store.UserPage{TotalCount: int(total)}
	out.Users, out.EndCursor, out.HasNextPage = store.PageOf(usersFromRows(rows), p, store.UserCursor)
	return out, nil
}

// ListWebhookEvents returns a page of the inbox, newest first, over the dead letters' index
// when they are asked for, else led by the event type when one is given, so that an index
// serves the page.
func (d *DB) ListWebhookEvents(ctx context.Context, f store.InboxFilter, p store.Page) (store.InboxPage, error) {
	q, err := store.CheckInboxQuery(f, p)
	if err != nil {
		return store.InboxPage{}, err
	}
	arg := sqlitedb.ListWebhookEventsPageParams{
		BeforeID: q.BeforeID,
		Type:     q.Type,
		Source:   string(q.Source),
		Outcome:  q.Outcome,
		MaxRows:  int64(q.Limit),
	}
	var rows []sqlitedb.WebhookEvent
	switch {
	case store.InboxOutcome(q.Outcome) == store.InboxFailed:
		rows, err = d.rq.ListDeadLettersPage(ctx, sqlitedb.ListDeadLettersPageParams{
			BeforeID: arg.BeforeID, Type: arg.Type, Source: arg.Source, MaxRows: arg.MaxRows,
		})
	case q.Type != "":
		rows, err = d.rq.ListWebhookEventsPageByType(ctx, sqlitedb.ListWebhookEventsPageByTypeParams(arg))
	default:
		rows, err = d.rq.ListWebhookEventsPage(ctx, arg)
	}
	if err != nil {
		return store.InboxPage{}, wrap(ctx, "list webhook events", err)
	}
	events := make([]store.InboxEvent, 0, len(rows))
	for _, r := range rows {
		events = append(events, inboxFromRow(r))
	}
	var out store.InboxPage
	out.Events, out.EndCursor, out.HasNextPage = store.PageOf(events, p, store.InboxCursor)
	return out, nil
}

// inReadTx runs fn in a read-only transaction on the reader pool: in WAL mode its reads see
// one snapshot of the database.
func (d *DB) inReadTx(ctx context.Context, fn func(q *sqlitedb.Queries) error) error {
	tx, err := d.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	err = fn(d.rq.WithTx(tx))
	return errors.Join(err, ignoreDone(tx.Rollback()))
}
