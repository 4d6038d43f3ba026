package graph

import (
	"github.com/terragate/terragate/graph/model"
	"github.com/terragate/terragate/internal/store"
)

func terraUser(u store.TerraUser) *model.TerraUser {
	out := &model.TerraUser{
		UserID:            u.UserID,
		Provider:          u.Provider,
		Active:            u.Active,
		Status:            model.ConnectionStatus(u.Status),
		Scopes:            u.Scopes,
		ConnectedAt:       u.ConnectedAt,
		LastWebhookUpdate: u.LastWebhookUpdate,
		UpdatedAt:         u.UpdatedAt,
	}
	if out.Scopes == nil {
		out.Scopes = []string{}
	}
	if u.ReferenceID != "" {
		ref := u.ReferenceID
		out.ReferenceID = &ref
	}
	return out
}

func widgetSession(s store.WidgetSession) *model.WidgetSession {
	return &model.WidgetSession{
		SessionID: s.ID,
		URL:       s.URL,
		ExpiresAt: s.ExpiresAt,
		CreatedAt: s.CreatedAt,
	}
}

func value(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
