package graph

import (
	"time"

	"github.com/terragate/terragate/graph/model"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/widget"
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
	out.ReferenceID = optional(u.ReferenceID)
	return out
}

func terraUsers(users []store.TerraUser) []*model.TerraUser {
	out := make([]*model.TerraUser, 0, len(users))
	for _, u := range users {
		out = append(out, terraUser(u))
	}
	return out
}

// widgetSession maps a session as it stands at now: a CREATED session past its expiry
// reads as EXPIRED even before the background expiry has recorded it.
func widgetSession(s store.WidgetSession, now time.Time) *model.WidgetSession {
	return &model.WidgetSession{
		SessionID:     s.ID,
		URL:           s.URL,
		ExpiresAt:     s.ExpiresAt,
		CreatedAt:     s.CreatedAt,
		Status:        model.WidgetSessionStatus(widget.EffectiveStatus(s, now)),
		Provider:      optional(s.Provider),
		FailureReason: optional(s.FailureReason),
		ReferenceID:   s.ReferenceID,
		TerraUserID:   s.TerraUserID,
		Providers:     s.Providers,
	}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func value(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
