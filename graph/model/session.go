package model

import "time"

// WidgetSession is the GraphQL WidgetSession. It carries what its lazily resolved fields
// (terraUser, alreadyConnected) need, which the schema does not expose.
type WidgetSession struct {
	SessionID     string              `json:"sessionId"`
	URL           string              `json:"url"`
	ExpiresAt     time.Time           `json:"expiresAt"`
	CreatedAt     time.Time           `json:"createdAt"`
	Status        WidgetSessionStatus `json:"status"`
	Provider      *string             `json:"provider,omitempty"`
	FailureReason *string             `json:"failureReason,omitempty"`

	ReferenceID string   `json:"-"`
	TerraUserID string   `json:"-"`
	Providers   []string `json:"-"`
}
