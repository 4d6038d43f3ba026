package graph

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/limit"
	"github.com/terragate/terragate/internal/metrics"
	"github.com/terragate/terragate/internal/tracing"
	"github.com/terragate/terragate/internal/trusted"
	"github.com/terragate/terragate/internal/wsgraphql"
)

// Limits of the GraphQL endpoint.
const (
	queryCacheSize = 1000 // parsed documents kept: parsing and validating is most of a small request's cost
	apqCacheSize   = 1000
	maxComplexity  = 200 // the costliest real operation (a session with everything) scores under 40
)

// Options configure the GraphQL handler.
type Options struct {
	// Introspection allows schema introspection (the playground needs it).
	Introspection bool
	// Secrets are scrubbed from every error message, whatever produced it. Service keys are
	// not among them: the Verifier finds those by their hashes.
	Secrets []string
	// UserHashKey keys the hashes that stand for callers in the operation log (see
	// UserHash). Instances that share it log the same hash for the same caller; empty means
	// a random key of this handler's own.
	UserHashKey []byte
	// HideDetails keeps upstream error details out of responses (production).
	HideDetails bool
	// Verifier authenticates WebSocket connections from their connection_init payload, and
	// finds service keys in error messages to scrub them.
	Verifier *auth.Verifier
	// Origins may open WebSocket connections from a browser (besides this server's own
	// origin); rs/cors does not see WebSocket upgrades, so they are checked here.
	Origins []string
	// MaxSubscriptions caps the subscriptions of one WebSocket connection (default 10).
	MaxSubscriptions int
	// Metrics records operations and subscriptions (nil: none).
	Metrics *metrics.Metrics
	// UserLimit is each end user's budget of operations, whether they send them or a
	// service sends them for them with actAs (nil: none).
	UserLimit *limit.Limiter
	// ServiceLimit is each service key's budget of operations, whoever it acts for (nil:
	// none).
	ServiceLimit *limit.Limiter
	// Tracing wraps each operation in an OpenTelemetry span.
	Tracing bool
	// TrustedDocuments are the documents the app was built with (nil: none, and any
	// document runs). With them, a request may name a document by its id, and
	// TrustedDocumentsMode says what becomes of other documents.
	TrustedDocuments     *trusted.Documents
	TrustedDocumentsMode trusted.Mode
	// KeepAlive is the interval of the server's pings (default 15 s).
	KeepAlive time.Duration
	Log       *slog.Logger
}

// NewHandler returns the GraphQL endpoint: POST JSON, GET for queries, and WebSocket
// (graphql-ws) for subscriptions. Each takes a document by its text or by its id (APQ's
// persistedQuery hash, or the persisted-documents documentId).
func NewHandler(r *Resolver, opts Options) http.Handler {
	if opts.MaxSubscriptions <= 0 {
		opts.MaxSubscriptions = 10
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 15 * time.Second
	}
	srv := handler.New(NewExecutableSchema(Config{Resolvers: r, Complexity: complexity()}))
	// First, so it sees every operation, refused ones included.
	if opts.Metrics != nil {
		srv.Use(opts.Metrics.GraphQL(authenticated))
	}
	if opts.Tracing {
		srv.Use(tracing.GraphQL())
	}
	// Pings for both protocols: "ka" for the legacy graphql-ws, ping/pong for
	// graphql-transport-ws, whose clients answer pongs (and are dropped when they stop).
	srv.AddTransport(wsgraphql.New(wsgraphql.Config{
		Origins:     opts.Origins,
		Init:        wsInit(opts.Verifier, opts.MaxSubscriptions),
		InitTimeout: 10 * time.Second,
		KeepAlive:   opts.KeepAlive,
	}))
	srv.AddTransport(transport.Options{})
	if opts.TrustedDocuments != nil {
		// Only trusted documents are named by id; without them no request pays for
		// looking for one.
		srv.AddTransport(documentIDs{transport.GET{}})
		srv.AddTransport(documentIDs{transport.POST{}})
	} else {
		srv.AddTransport(transport.GET{})
		srv.AddTransport(transport.POST{})
	}
	srv.SetQueryCache(lru.New[*ast.QueryDocument](queryCacheSize))
	if opts.Introspection {
		srv.Use(extension.Introspection{})
	}
	// Before APQ, which would otherwise register and run any document sent with its hash.
	if opts.TrustedDocuments != nil {
		srv.Use(newTrustedDocuments(opts.TrustedDocuments, opts.TrustedDocumentsMode, opts.Metrics, opts.Log))
	}
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](apqCacheSize)})
	srv.Use(shapeLimit{})
	srv.AroundOperations(rateLimit(opts.UserLimit, opts.ServiceLimit))
	srv.AroundResponses(logOperations(opts.Log, userHashKey(opts.UserHashKey)))
	srv.Use(extension.FixedComplexityLimit(maxComplexity))
	srv.SetErrorPresenter(presentError(opts.Log, scrubber(opts.Secrets, opts.Verifier), opts.HideDetails))
	srv.SetRecoverFunc(recoverPanic(opts.Log))
	return srv
}

// authenticated reports whether the operation's caller is signed in: only their operation
// names become metric labels.
func authenticated(ctx context.Context) bool {
	_, err := auth.Caller(ctx)
	return err == nil
}

// wsInit authenticates a WebSocket connection from its connection_init payload
// ({"Authorization": "Bearer ..."}), since browsers cannot set headers on WebSocket
// requests, and gives the connection its subscription budget. A bad token closes the
// connection (4403 Forbidden) before any subscription starts; so does the token's expiry
// later (the returned time), since the connection is authenticated only here.
func wsInit(v *auth.Verifier, maxSubs int) wsgraphql.InitFunc {
	return func(ctx context.Context, payload transport.InitPayload) (context.Context, time.Time, error) {
		var user auth.User
		if header := payload.Authorization(); header != "" {
			token, err := auth.ParseBearer(header)
			if err != nil {
				return ctx, time.Time{}, err
			}
			if user, err = v.Verify(token); err != nil {
				return ctx, time.Time{}, err
			}
			ctx = auth.WithUser(ctx, user)
		} else {
			var err error
			if user, err = auth.Require(ctx); err != nil {
				return ctx, time.Time{}, err
			}
		}
		return withSlots(ctx, maxSubs), user.ValidUntil, nil
	}
}
