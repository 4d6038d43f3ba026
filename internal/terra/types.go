// Package terra is a small typed client for the parts of Terra's API that terragate uses,
// plus the webhook signature verifier and event decoder. It knows nothing of GraphQL or SQL.
package terra

import "time"

// User is a Terra user: one connected provider account of one end user. Field names follow
// Terra's TerraUser schema; nullable fields are pointers.
type User struct {
	UserID            string  `json:"user_id"`
	Provider          string  `json:"provider"`
	ReferenceID       *string `json:"reference_id"`
	Active            *bool   `json:"active"`
	Scopes            *string `json:"scopes"`
	CreatedAt         *string `json:"created_at"`
	LastWebhookUpdate *string `json:"last_webhook_update"`
}

// WidgetSessionParams is the body of a widget session request. Every field is optional.
type WidgetSessionParams struct {
	Providers              string `json:"providers,omitempty"` // comma separated, e.g. "OURA,GARMIN"
	Language               string `json:"language,omitempty"`
	ReferenceID            string `json:"reference_id,omitempty"`
	AuthSuccessRedirectURL string `json:"auth_success_redirect_url,omitempty"`
	AuthFailureRedirectURL string `json:"auth_failure_redirect_url,omitempty"`
	// ShowDisconnect lets the end user remove an existing connection from the widget; nil
	// leaves it out (Terra's default). Neither endpoint's published spec lists it; it is
	// the name Terra's SDKs send, on both.
	ShowDisconnect *bool `json:"show_disconnect,omitempty"`
}

// WidgetSession is Terra's answer to a widget session request.
type WidgetSession struct {
	SessionID string  `json:"session_id"`
	URL       string  `json:"url"`
	Status    string  `json:"status"`
	ExpiresIn float64 `json:"expires_in"`
}

// UserInfo is the answer of userInfo?user_id=.
type UserInfo struct {
	User            User   `json:"user"`
	Status          string `json:"status"`
	IsAuthenticated bool   `json:"is_authenticated"`
}

// SubscriptionsPage is one page of GET /subscriptions?page=N.
type SubscriptionsPage struct {
	Users   []User
	Next    *int // nil on the last page
	MaxPage int
}

// Integrations lists the provider names Terra offers.
type Integrations struct {
	Providers    []string `json:"providers"`
	SDKProviders []string `json:"sdk_providers"`
}

// Event is a decoded webhook event. Only the connection events carry the fields below;
// other types (data events, healthcheck, ...) decode with Type and Status alone.
type Event struct {
	Type            string  `json:"type"`
	Status          *string `json:"status"`
	User            *User   `json:"user"`
	NewUser         *User   `json:"new_user"`
	OldUser         *User   `json:"old_user"`
	ReferenceID     *string `json:"reference_id"`
	WidgetSessionID *string `json:"widget_session_id"`
	FlowID          *string `json:"flow_id"`
	Reason          *string `json:"reason"`
	Message         *string `json:"message"`
	Provider        *string `json:"provider"`
	Version         *string `json:"version"`
	// ScopesAdded and ScopesRemoved are comma-separated in Terra's schema; the decoder also
	// accepts JSON arrays and normalises them to the comma-separated form.
	ScopesAdded   *string `json:"scopes_added"`
	ScopesRemoved *string `json:"scopes_removed"`
}

// Connection event types (see Terra's events schemas).
const (
	EventAuth             = "auth"
	EventAuthCancelled    = "auth_cancelled"
	EventDeauth           = "deauth"
	EventUserReauth       = "user_reauth"
	EventAccessRevoked    = "access_revoked"
	EventConnectionError  = "connection_error"
	EventPermissionChange = "permission_change"
)

// SignatureTolerance is how far a webhook's signed timestamp may be from now, either way.
const SignatureTolerance = 300 * time.Second

// Event types that are not connection events: Terra's housekeeping, and the health data
// itself. A type Terra adds later is data too (see IsDataEvent).
const (
	EventHealthcheck            = "healthcheck"
	EventProcessing             = "processing"
	EventRateLimitHit           = "rate_limit_hit"
	EventLargeRequestProcessing = "large_request_processing"
	EventLargeRequestSending    = "large_request_sending"
	EventS3Payload              = "s3_payload"
)

// EventTypes lists the webhook event types terragate knows by name: the connection events,
// Terra's housekeeping and the data types of its published API.
var EventTypes = []string{
	EventAuth, EventAuthCancelled, EventDeauth, EventUserReauth, EventAccessRevoked,
	EventConnectionError, EventPermissionChange,
	EventHealthcheck, EventProcessing, EventRateLimitHit, EventLargeRequestProcessing,
	EventLargeRequestSending, EventS3Payload,
	"activity", "athlete", "body", "daily", "sleep", "nutrition", "menstruation",
	"planned_workout", "hormone", "lab_report", "route",
}

// IsConnectionEvent reports whether t is one of the connection events terragate applies.
func IsConnectionEvent(t string) bool { return isConnectionEvent(t) }

// HistoryTypes are the data types Terra answers history requests for (RequestHistory).
var HistoryTypes = []string{"activity", "sleep", "body", "daily", "nutrition", "menstruation", "athlete"}

// MaxHistoryDays is the longest range Terra accepts in one history request.
const MaxHistoryDays = 1825
