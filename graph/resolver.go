// Package graph is terragate's GraphQL API: the schema in schema/, thin resolvers that ask
// who is calling, call a domain package and map the answer, and the HTTP handler.
package graph

import (
	"log/slog"
	"time"

	"github.com/terragate/terragate/internal/admin"
	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/events"
	"github.com/terragate/terragate/internal/limit"
	"github.com/terragate/terragate/internal/metrics"
	"github.com/terragate/terragate/internal/provider"
	"github.com/terragate/terragate/internal/sdktoken"
	"github.com/terragate/terragate/internal/widget"
)

// Resolver holds the dependencies of every resolver.
type Resolver struct {
	Widgets     *widget.Service
	Connections *connection.Service
	Admin       *admin.Service
	Catalog     *provider.Catalog
	SDKTokens   *sdktoken.Service
	Bus         events.Bus
	Log         *slog.Logger
	// Metrics counts subscriptions and the connection funnel (nil: none).
	Metrics *metrics.Metrics
	// SessionLimit is each end user's budget of createWidgetSession and createSdkToken
	// together: both start a connection (nil: none).
	SessionLimit *limit.Limiter
	// TerraLimit is each end user's budget of the mutations that call Terra, shared by
	// them all, so that one user cannot spend the account's Terra allowance (nil: none).
	TerraLimit *limit.Limiter
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}
