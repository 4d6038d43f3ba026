package graph

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/fault"
	"github.com/terragate/terragate/internal/limit"
)

// CodeRateLimited refuses an operation over the caller's rate: the per-IP limit's code,
// which refuses before GraphQL runs, so that apps handle both alike.
const CodeRateLimited = limit.CodeRateLimited

// RateLimitedError says how long to wait.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many requests; retry in %d s", retrySeconds(e.RetryAfter))
}

// Kind is fault.RateLimited.
func (e *RateLimitedError) Kind() fault.Kind { return fault.RateLimited }

// Wait is how long until the budget has room again.
func (e *RateLimitedError) Wait() time.Duration { return e.RetryAfter }

func retrySeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// rateLimit charges each operation, before it runs, to the end users it is for: a signed-in
// end user's to their own budget (users); a service's to its key's budget (services) and to
// the budget of each end user it acts for (actAs), the same budget their own calls use, so
// that one user's traffic through a backend cannot crowd out the others'. The service's
// budget is charged first: an operation it refuses takes nothing from its users. Callers
// without a valid token are already refused.
func rateLimit(users, services *limit.Limiter) graphql.OperationMiddleware {
	return func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		u, ok := auth.ForContext(ctx)
		if !ok {
			return next(ctx)
		}
		var err error
		if u.Service {
			err = charge(u.ID, services)
			for _, id := range actingFor(ctx) {
				if err != nil {
					break
				}
				err = charge(id, users)
			}
		} else {
			err = charge(u.ID, users)
		}
		if rl, limited := isRateLimited(err); limited {
			return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{rateLimited(rl.RetryAfter)}})
		}
		return next(ctx)
	}
}

// actingFor lists the end users the operation's fields name with actAs, each once. Only
// root fields take actAs.
func actingFor(ctx context.Context) []string {
	if !graphql.HasOperationContext(ctx) {
		return nil
	}
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil {
		return nil
	}
	var ids []string
	for _, f := range graphql.CollectFields(oc, oc.Operation.SelectionSet, nil) {
		if id, ok := f.ArgumentMap(oc.Variables)["actAs"].(string); ok && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

func rateLimited(wait time.Duration) *gqlerror.Error {
	err := &RateLimitedError{RetryAfter: wait}
	return &gqlerror.Error{Message: err.Error(), Extensions: map[string]any{
		"code": CodeRateLimited, "retryAfter": retrySeconds(wait),
	}}
}

// charge takes one call from each of the key's budgets in turn (a nil one allows all),
// stopping at the first that refuses. Resolvers charge the end user acted for: the
// mutations that call Terra share TerraLimit, and createWidgetSession is also held to
// SessionLimit, charged first as the tighter one, so a refused session costs no Terra
// budget.
func charge(key string, limits ...*limit.Limiter) error {
	for _, l := range limits {
		if ok, wait := l.Allow(key); !ok {
			return &RateLimitedError{RetryAfter: wait}
		}
	}
	return nil
}

func isRateLimited(err error) (*RateLimitedError, bool) {
	var rl *RateLimitedError
	return rl, errors.As(err, &rl)
}
