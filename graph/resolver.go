// Package graph is terragate's GraphQL API: the schema in schema/, thin resolvers that ask
// who is calling, call a domain package and map the answer, and the HTTP handler.
package graph

import (
	"log/slog"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/widget"
)

// Resolver holds the dependencies of every resolver.
type Resolver struct {
	Widgets *widget.Service
	Store   store.Store
	Log     *slog.Logger
}
