package metrics

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// Codes of operations that ended without a GraphQL error code.
const (
	codeUnknown  = "unknown"  // an error without extensions.code
	codeCanceled = "canceled" // the client went away before a response was produced
)

// GraphQL returns a gqlgen extension that counts operations by name and outcome and times
// queries and mutations. Add it first (srv.Use(m.GraphQL(...)) before any other extension or
// AroundOperations) so that it is the outermost middleware and also sees the operations
// other extensions refuse, such as a rate limit.
//
// learns says whether an operation's name may take one of the capped places (nil: none
// may): graph lets authenticated callers' operations do so, so that no one can fill the cap
// with made-up names before signing in. Any other operation is labelled with a name already
// known, or "other".
//
// It hooks two places because neither sees everything: operation middleware does not run
// for requests refused while parsing or validating (gqlgen answers those through response
// middleware alone), and response middleware does not run for responses an operation
// middleware returns itself.
func (m *Metrics) GraphQL(learns func(context.Context) bool) graphql.HandlerExtension {
	return gqlExtension{m: m, learns: learns}
}

type gqlExtension struct {
	m      *Metrics
	learns func(context.Context) bool
}

var (
	_ graphql.HandlerExtension     = gqlExtension{}
	_ graphql.OperationInterceptor = gqlExtension{}
	_ graphql.ResponseInterceptor  = gqlExtension{}
)

// ExtensionName names the extension in gqlgen's stats.
func (gqlExtension) ExtensionName() string { return "TerragateMetrics" }

// Validate accepts every schema.
func (gqlExtension) Validate(graphql.ExecutableSchema) error { return nil }

// counted marks a context whose operation the operation middleware records, so that the
// response middleware inside it does not record it again.
type counted struct{}

// InterceptOperation records operations that parsed and validated. A query or mutation is
// recorded with its single response; a subscription with its first message, or when it
// ends if it never sent one.
func (e gqlExtension) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if e.m == nil || !graphql.HasOperationContext(ctx) {
		return next(ctx)
	}
	oc := graphql.GetOperationContext(ctx)
	start := oc.Stats.OperationStart
	if start.IsZero() {
		start = time.Now()
	}
	// This operation is valid, so its name may take one of the capped places if the caller
	// is one that may add names.
	name := e.m.operationName(oc, e.learns != nil && e.learns(ctx))
	subscription := oc.Operation != nil && oc.Operation.Operation == ast.Subscription

	respond := next(context.WithValue(ctx, counted{}, true))
	var done atomic.Bool
	return func(ctx context.Context) *graphql.Response {
		resp := respond(ctx)
		if done.CompareAndSwap(false, true) {
			took := time.Since(start)
			if subscription {
				took = -1 // time to the first event measures the events, not terragate
			}
			e.m.observeOperation(name, e.m.responseCode(ctx, resp), took)
		}
		return resp
	}
}

// InterceptResponse records responses no operation middleware saw: requests refused before
// they ran (unparsable, invalid, too complex, unknown persisted query).
func (e gqlExtension) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if e.m == nil || ctx.Value(counted{}) != nil {
		return resp
	}
	name, took := other, time.Duration(-1)
	if graphql.HasOperationContext(ctx) {
		oc := graphql.GetOperationContext(ctx)
		// A refused request may name itself anything: it gets a known name or "other", never
		// a new place under the cap.
		name = e.m.operationName(oc, false)
		if !oc.Stats.OperationStart.IsZero() {
			took = time.Since(oc.Stats.OperationStart)
		}
	}
	e.m.observeOperation(name, e.m.responseCode(ctx, resp), took)
	return resp
}

// operationName is the label of an operation: its name in the document when gqlgen found
// the operation ("anonymous" when it has none), else the name the client asked for, else
// "other" (a request refused before its operation was found names nothing we can trust).
// A name that is not a GraphQL name of at most 64 bytes, or beyond the cap, is "other".
func (m *Metrics) operationName(oc *graphql.OperationContext, learn bool) string {
	var name string
	switch {
	case oc.Operation != nil && oc.Operation.Name == "":
		return anonymous
	case oc.Operation != nil:
		name = oc.Operation.Name
	case oc.OperationName != "":
		name = oc.OperationName
	default:
		return other
	}
	return m.operations.admit(name, isName(name, 64), learn)
}

// responseCode is "ok" for a response without errors, else the first error's
// extensions.code (the error presenter has already run): the first error is the one a
// client acts on, and one label per response keeps the counter a count of operations.
func (m *Metrics) responseCode(ctx context.Context, resp *graphql.Response) string {
	if resp == nil {
		if ctx.Err() != nil {
			return codeCanceled
		}
		return ok
	}
	if len(resp.Errors) == 0 {
		return ok
	}
	code, _ := resp.Errors[0].Extensions["code"].(string)
	if code == "" {
		return codeUnknown
	}
	return m.codes.admit(code, isCode(code), true)
}

// observeOperation counts an operation and, when took is not negative, times it.
func (m *Metrics) observeOperation(name, code string, took time.Duration) {
	m.gqlRequests.WithLabelValues(name, code).Inc()
	if took >= 0 {
		m.gqlDuration.WithLabelValues(name, code).Observe(took.Seconds())
	}
}
