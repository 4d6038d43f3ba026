package tracing

import (
	"context"
	"slices"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Attributes of GraphQL spans.
const (
	attrOperationName = attribute.Key("graphql.operation.name")
	attrOperationType = attribute.Key("graphql.operation.type")
	attrErrorCodes    = attribute.Key("graphql.error.codes")
)

// GraphQL returns a gqlgen extension that wraps each operation in a span named
// "graphql <operation name>" ("graphql <query|mutation|subscription>" for an anonymous
// one), with the attributes graphql.operation.name and graphql.operation.type and, when
// the response has errors, their extensions.code values in graphql.error.codes. Variables
// and error messages are never recorded.
//
// Requests refused before they ran (unparsable, invalid, too complex) get a span too,
// named after the operation the client asked for when that is a GraphQL name. A
// subscription's span lasts until the subscription ends.
func GraphQL() graphql.HandlerExtension { return gqlExtension{} }

type gqlExtension struct{}

var (
	_ graphql.HandlerExtension     = gqlExtension{}
	_ graphql.OperationInterceptor = gqlExtension{}
	_ graphql.ResponseInterceptor  = gqlExtension{}
)

// ExtensionName names the extension in gqlgen's stats.
func (gqlExtension) ExtensionName() string { return "TerragateTracing" }

// Validate accepts every schema.
func (gqlExtension) Validate(graphql.ExecutableSchema) error { return nil }

// traced marks a context whose operation already has its span.
type traced struct{}

// InterceptOperation spans an operation that parsed and validated.
func (gqlExtension) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if !graphql.HasOperationContext(ctx) {
		return next(ctx)
	}
	oc := graphql.GetOperationContext(ctx)
	name, kind := operation(oc)
	ctx, span := startOperation(ctx, name, kind)
	var once sync.Once
	end := func(resp *graphql.Response) {
		once.Do(func() {
			finish(span, resp)
			span.End()
		})
	}
	subscription := kind == "subscription"
	if subscription {
		// A subscription whose client goes away may never be asked for its last response.
		context.AfterFunc(ctx, func() { end(nil) })
	}
	respond := next(context.WithValue(ctx, traced{}, true))
	return func(ctx context.Context) *graphql.Response {
		resp := respond(ctx)
		switch {
		case !subscription:
			end(resp)
		case resp == nil:
			end(nil)
		case len(resp.Errors) > 0:
			span.SetAttributes(attrErrorCodes.StringSlice(errorCodes(resp)))
			span.SetStatus(codes.Error, "graphql errors")
		}
		return resp
	}
}

// InterceptResponse spans requests refused before they ran, which no operation
// middleware sees.
func (gqlExtension) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	if ctx.Value(traced{}) != nil {
		return next(ctx)
	}
	name, kind := "", ""
	if graphql.HasOperationContext(ctx) {
		name, kind = operation(graphql.GetOperationContext(ctx))
	}
	ctx, span := startOperation(ctx, name, kind)
	defer span.End()
	resp := next(ctx)
	finish(span, resp)
	return resp
}

// startOperation starts an operation's span.
func startOperation(ctx context.Context, name, kind string) (context.Context, trace.Span) {
	title := name
	if title == "" {
		title = kind
	}
	if title == "" {
		title = "unknown"
	}
	attrs := make([]attribute.KeyValue, 0, 2)
	if name != "" {
		attrs = append(attrs, attrOperationName.String(name))
	}
	if kind != "" {
		attrs = append(attrs, attrOperationType.String(kind))
	}
	return tracer().Start(ctx, "graphql "+title,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
}

// finish records a response's error codes on its span.
func finish(span trace.Span, resp *graphql.Response) {
	if resp == nil || len(resp.Errors) == 0 {
		return
	}
	span.SetAttributes(attrErrorCodes.StringSlice(errorCodes(resp)))
	span.SetStatus(codes.Error, "graphql errors")
}

// operation is an operation's name ("" when anonymous or not a GraphQL name of at most
// 64 bytes: clients choose it) and kind ("" before gqlgen found the operation).
func operation(oc *graphql.OperationContext) (name, kind string) {
	if oc.Operation != nil {
		name, kind = oc.Operation.Name, string(oc.Operation.Operation)
	} else {
		name = oc.OperationName
	}
	if !isName(name) {
		name = ""
	}
	return name, kind
}

// errorCodes are the distinct extensions.code values of a response's errors, in order;
// "unknown" stands for errors without one.
func errorCodes(resp *graphql.Response) []string {
	var out []string
	for _, e := range resp.Errors {
		code, _ := e.Extensions["code"].(string)
		if !isName(code) {
			code = "unknown"
		}
		if !slices.Contains(out, code) {
			out = append(out, code)
		}
	}
	return out
}

// isName reports whether s is a GraphQL name of at most 64 bytes.
func isName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}
