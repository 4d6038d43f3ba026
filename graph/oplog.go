package graph

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/terragate/terragate/internal/auth"
)

// logOperations writes one line per GraphQL operation: its name, the caller as a hash (so
// lines about one person can be correlated without naming them), how long it took and the
// error codes. Variables and results are never logged: they may hold health data.
func logOperations(log *slog.Logger) graphql.ResponseMiddleware {
	return func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		start := time.Now()
		resp := next(ctx)
		if !graphql.HasOperationContext(ctx) {
			return resp
		}
		oc := graphql.GetOperationContext(ctx)
		attrs := []slog.Attr{
			slog.String("operation", operationName(oc)),
			slog.Duration("duration", time.Since(start)),
		}
		if u, err := auth.Caller(ctx); err == nil {
			attrs = append(attrs, slog.String("user_hash", UserHash(u.ID)))
		}
		if resp != nil && len(resp.Errors) > 0 {
			codes := make([]string, 0, len(resp.Errors))
			for _, e := range resp.Errors {
				if c, ok := e.Extensions["code"].(string); ok {
					codes = append(codes, c)
				}
			}
			attrs = append(attrs, slog.String("error_codes", strings.Join(codes, ",")))
		}
		log.LogAttrs(ctx, slog.LevelInfo, "graphql operation", attrs...)
		return resp
	}
}

// operationName is the operation's name, or for an anonymous one its kind and first field
// ("query connectedUsers").
func operationName(oc *graphql.OperationContext) string {
	if oc.OperationName != "" {
		return oc.OperationName
	}
	if oc.Operation == nil {
		return "unknown"
	}
	name := string(oc.Operation.Operation)
	if len(oc.Operation.SelectionSet) > 0 {
		if f, ok := oc.Operation.SelectionSet[0].(*ast.Field); ok {
			name += " " + f.Name
		}
	}
	return name
}

// UserHash is a short, stable pseudonym of a user id for logs.
func UserHash(id string) string {
	sum := sha256.Sum256([]byte("terragate user\x00" + id))
	return hex.EncodeToString(sum[:8])
}
