package sqlite

import (
	"time"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/sqlite/sqlitedb"
)

// The driver reads DATETIME text back in whatever zone it parses; the store hands out UTC.

func utc(t time.Time) time.Time { return t.UTC() }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func storedPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := store.StoredTime(*t)
	return &u
}

func sessionFromRow(r sqlitedb.WidgetSession) store.WidgetSession {
	return store.WidgetSession{
		ID:                 r.ID,
		TerraSessionID:     r.TerraSessionID,
		ReferenceID:        r.ReferenceID,
		Providers:          store.ParseList(r.Providers),
		Language:           r.Language,
		SuccessRedirectURL: r.SuccessRedirectURL,
		FailureRedirectURL: r.FailureRedirectURL,
		URL:                r.URL,
		ExpiresAt:          utc(r.ExpiresAt),
		CreatedAt:          utc(r.CreatedAt),
		UpdatedAt:          utc(r.UpdatedAt),
		Status:             store.SessionStatus(r.Status),
		Provider:           r.Provider,
		TerraUserID:        r.TerraUserID,
		FailureReason:      r.FailureReason,
		InputKey:           r.InputKey,
		ReturnUsedAt:       utcPtr(r.ReturnUsedAt),
	}
}

func userFromRow(r sqlitedb.TerraUser) store.TerraUser {
	return store.TerraUser{
		UserID:            r.UserID,
		Provider:          r.Provider,
		ReferenceID:       r.ReferenceID,
		Active:            r.Active,
		Status:            store.ConnectionStatus(r.Status),
		Scopes:            store.ParseList(r.Scopes),
		ScopesAt:          utcPtr(r.ScopesAt),
		ConnectedAt:       utc(r.ConnectedAt),
		LastWebhookUpdate: utcPtr(r.LastWebhookUpdate),
		UpdatedAt:         utc(r.UpdatedAt),
		StateAt:           utc(r.StateAt),
		ReplacedBy:        r.ReplacedBy,
	}
}

func usersFromRows(rows []sqlitedb.TerraUser) []store.TerraUser {
	users := make([]store.TerraUser, 0, len(rows))
	for _, r := range rows {
		users = append(users, userFromRow(r))
	}
	return users
}

func saveParams(u store.TerraUser) sqlitedb.SaveTerraUserParams {
	return sqlitedb.SaveTerraUserParams{
		UserID:            u.UserID,
		ReferenceID:       u.ReferenceID,
		Provider:          u.Provider,
		Active:            u.Active,
		Status:            string(u.Status),
		Scopes:            store.JoinList(u.Scopes),
		ScopesAt:          storedPtr(u.ScopesAt),
		ConnectedAt:       store.StoredTime(u.ConnectedAt),
		LastWebhookUpdate: storedPtr(u.LastWebhookUpdate),
		UpdatedAt:         store.StoredTime(u.UpdatedAt),
		StateAt:           store.StoredTime(u.StateAt),
		ReplacedBy:        u.ReplacedBy,
	}
}

func inboxFromRow(r sqlitedb.WebhookEvent) store.InboxEvent {
	e := store.InboxEvent{
		ID:         r.ID,
		DedupeKey:  r.DedupeKey,
		Source:     store.DeliverySource(r.Source),
		TraceID:    r.TraceID,
		Type:       r.Type,
		Kind:       store.EventKind(r.Kind),
		SignedAt:   utc(r.SignedAt),
		ReceivedAt: utc(r.ReceivedAt),
		Body:       r.Body,
		AppliedAt:  utcPtr(r.AppliedAt),
		Error:      r.Error,
		ReplayedAt: utcPtr(r.ReplayedAt),
		Replays:    int(r.Replays),
	}
	if r.Outcome != nil {
		e.Outcome = store.InboxOutcome(*r.Outcome)
	}
	return e
}

func auditFromRow(r sqlitedb.AuditLog) (store.AuditEntry, error) {
	detail, err := store.ParseAuditDetail([]byte(r.Detail))
	if err != nil {
		return store.AuditEntry{}, err
	}
	return store.AuditEntry{
		ID:          r.ID,
		At:          utc(r.At),
		Actor:       r.Actor,
		ActorKind:   r.ActorKind,
		Action:      r.Action,
		Subject:     r.Subject,
		ReferenceID: r.ReferenceID,
		ClientIP:    r.ClientIP,
		Detail:      detail,
	}, nil
}
