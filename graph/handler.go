package graph

import (
	"log/slog"
	"net/http"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/99designs/gqlgen/graphql/playground"
	"github.com/vektah/gqlparser/v2/ast"
)

// Limits of the GraphQL endpoint.
const (
	queryCacheSize = 1000 // parsed documents kept: parsing and validating is most of a small request's cost
	apqCacheSize   = 1000
	maxComplexity  = 500 // the deepest real operation scores well under 50
)

// Options configure the GraphQL handler.
type Options struct {
	// Introspection allows schema introspection (the playground needs it).
	Introspection bool
	// Secrets are scrubbed from every error message, whatever produced it.
	Secrets []string
	Log     *slog.Logger
}

// NewHandler returns the GraphQL endpoint: POST JSON, and GET for queries.
func NewHandler(r *Resolver, opts Options) http.Handler {
	srv := handler.New(NewExecutableSchema(Config{Resolvers: r}))
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](queryCacheSize))
	if opts.Introspection {
		srv.Use(extension.Introspection{})
	}
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](apqCacheSize)})
	srv.Use(extension.FixedComplexityLimit(maxComplexity))
	srv.SetErrorPresenter(presentError(opts.Log, opts.Secrets))
	srv.SetRecoverFunc(recoverPanic(opts.Log))
	return srv
}

// Playground serves GraphiQL for endpoint. headers are shown pre-filled in its header
// editor (the demo puts a ready bearer token there).
func Playground(endpoint string, headers map[string]string) http.Handler {
	return playground.Handler("terragate", endpoint,
		playground.WithGraphiqlUiHeaders(headers),
		playground.WithGraphiqlEnablePluginExplorer(true),
		playground.WithStoragePrefix("terragate:"),
	)
}
