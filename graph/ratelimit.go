package graph

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/terragate/terragate/internal/auth"
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

func retrySeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// userRateLimit charges every operation of a signed-in caller to their own bucket, so one
// account cannot crowd out the others; callers without a valid token are already refused.
func userRateLimit(l *limit.Limiter) graphql.OperationMiddleware {
	return func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		u, ok := auth.ForContext(ctx)
		if !ok || l == nil {
			return next(ctx)
		}
		if allowed, wait := l.Allow(u.ID); !allowed {
			return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{rateLimited(wait)}})
		}
		return next(ctx)
	}
}

func rateLimited(wait time.Duration) *gqlerror.Error {
	err := &RateLimitedError{RetryAfter: wait}
	return &gqlerror.Error{Message: err.Error(), Extensions: map[string]any{
		"code": CodeRateLimited, "retryAfter": retrySeconds(wait),
	}}
}

// chargeSession takes one createWidgetSession from the caller's stricter budget: each
// session costs a Terra call.
func (r *Resolver) chargeSession(userID string) error {
	if r.SessionLimit == nil {
		return nil
	}
	if ok, wait := r.SessionLimit.Allow(userID); !ok {
		return &RateLimitedError{RetryAfter: wait}
	}
	return nil
}

func isRateLimited(err error) (*RateLimitedError, bool) {
	var rl *RateLimitedError
	return rl, errors.As(err, &rl)
}
