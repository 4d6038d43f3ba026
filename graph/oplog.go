package graph

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/terragate/terragate/internal/auth"
)

// logOperations writes one line per GraphQL operation: its name, the caller as a hash keyed
// with hashKey (so lines about one person can be correlated without naming them), how long
// it took and the error codes. Variables and results are never logged: they may hold health
// data.
func logOperations(log *slog.Logger, hashKey []byte) graphql.ResponseMiddleware {
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
			attrs = append(attrs, slog.String("user_hash", UserHash(hashKey, u.ID)))
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

// UserHash is a short pseudonym of a user id for logs: HMAC-SHA256 under key, so that
// nobody without the key can reverse it by hashing a list of likely ids, and the same for
// every instance and restart that shares the key.
func UserHash(key []byte, id string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// userHashKey is the key of the user hashes: the configured one, or without one a random
// key, so that hashes correlate within this process only and are still never reversible.
func userHashKey(configured []byte) []byte {
	if len(configured) > 0 {
		return slices.Clone(configured)
	}
	return []byte(rand.Text())
}
