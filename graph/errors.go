package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/httplog"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/widget"
)

// Error codes in extensions.code: the public contract of failures.
const (
	CodeUnauthenticated     = "UNAUTHENTICATED"
	CodeForbidden           = "FORBIDDEN"
	CodeBadUserInput        = "BAD_USER_INPUT"
	CodeNotFound            = "NOT_FOUND"
	CodeUpstreamError       = "UPSTREAM_ERROR"
	CodeUpstreamUnavailable = "UPSTREAM_UNAVAILABLE"
	CodeInternal            = "INTERNAL"
	CodeTooManySubs         = "TOO_MANY_SUBSCRIPTIONS"
	CodeConflict            = "CONFLICT"
	CodeReplayFailed        = "REPLAY_FAILED"
)

// presentError maps domain error kinds to extensions.code. Anything unknown is logged (the
// logger's httplog.ContextHandler adds the request id) and shown as a generic internal
// error, so driver errors and internals never reach a client. Every message goes through
// scrub, which takes out secrets, as a last line of defence.
func presentError(log *slog.Logger, scrub func(string) string, hideDetails bool) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		e := graphql.DefaultErrorPresenter(ctx, err)
		var gqlErr *gqlerror.Error
		if errors.As(err, &gqlErr) && gqlErr.Err == nil {
			// gqlgen's own parse and validation errors: already client-facing.
			e.Message = scrub(e.Message)
			return e
		}
		code, msg, ext := classify(err, hideDetails)
		if code == CodeInternal {
			log.ErrorContext(ctx, "graphql internal error", "path", e.Path.String(), "err", scrub(err.Error()))
		}
		e.Message = scrub(msg)
		e.Extensions = map[string]any{"code": code}
		if id := httplog.RequestID(ctx); id != "" {
			e.Extensions["requestId"] = id // what support asks for; the log has the rest
		}
		for k, v := range ext {
			e.Extensions[k] = v
		}
		return e
	}
}

// classify maps an error to its code, message and extensions. hideDetails (production)
// leaves out what Terra said, keeping only its status.
func classify(err error, hideDetails bool) (code, msg string, ext map[string]any) {
	var (
		input  *widget.InputError
		arg    *store.ArgumentError
		apiErr *terra.APIError
	)
	if rl, ok := isRateLimited(err); ok {
		return CodeRateLimited, rl.Error(), map[string]any{"retryAfter": retrySeconds(rl.RetryAfter)}
	}
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return CodeUnauthenticated, "not signed in: " + unauthReason(err), nil
	case errors.Is(err, auth.ErrForbidden):
		return CodeForbidden, "forbidden: " + unauthReason(err), nil
	case errors.As(err, &input):
		return CodeBadUserInput, input.Error(), map[string]any{"field": input.Field}
	case errors.Is(err, ErrTooManySubscriptions):
		return CodeTooManySubs, err.Error(), nil
	case errors.As(err, new(*ReplayError)):
		return CodeReplayFailed, err.Error(), nil
	case errors.Is(err, store.ErrConflict):
		return CodeConflict, "conflict: the record is not in a state that allows this", nil
	case errors.As(err, &arg):
		return CodeBadUserInput, arg.Error(), map[string]any{"field": arg.Arg}
	case errors.Is(err, store.ErrInvalid):
		// Data the store refused that is no single argument; its message says what, and
		// never carries a driver's text.
		return CodeBadUserInput, err.Error(), nil
	case errors.Is(err, store.ErrNotFound):
		return CodeNotFound, "not found", nil
	case terra.IsUnavailable(err), errors.Is(err, context.DeadlineExceeded):
		msg := "Terra is unavailable right now; try again shortly"
		if errors.As(err, &apiErr) {
			msg = fmt.Sprintf("Terra is unavailable right now (it answered %d %s); try again shortly", apiErr.StatusCode, http.StatusText(apiErr.StatusCode))
		}
		return CodeUpstreamUnavailable, msg, upstreamExtensions(err)
	case errors.As(err, &apiErr):
		msg := fmt.Sprintf("Terra answered %d %s", apiErr.StatusCode, http.StatusText(apiErr.StatusCode))
		if !hideDetails && apiErr.Message != "" && apiErr.Message != http.StatusText(apiErr.StatusCode) {
			msg += ": " + apiErr.Message
		}
		return CodeUpstreamError, msg, upstreamExtensions(err)
	default:
		return CodeInternal, "internal error", nil
	}
}

// upstreamExtensions are what a client can act on in a Terra failure, under the same names
// whatever the failure: status, Terra's HTTP status when it answered, and retryAfter, the
// seconds to wait, when Terra (Retry-After) or an open circuit said.
func upstreamExtensions(err error) map[string]any {
	ext := map[string]any{}
	var apiErr *terra.APIError
	if errors.As(err, &apiErr) {
		ext["status"] = apiErr.StatusCode
	}
	if wait, ok := terra.RetryAfter(err); ok {
		ext["retryAfter"] = retrySeconds(wait)
	}
	return ext
}

// unauthReason is the part of an authentication error after the sentinel, which the auth
// package keeps safe to show ("token expired", ...).
func unauthReason(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return "invalid token"
}

// scrubber takes out of a message the service keys v knows (by their hashes: it keeps no
// key) and then each of secrets.
func scrubber(secrets []string, v *auth.Verifier) func(string) string {
	return func(s string) string {
		if v != nil {
			s = v.RedactServiceKeys(s)
		}
		for _, sec := range secrets {
			if len(sec) >= 4 {
				s = strings.ReplaceAll(s, sec, auth.Redacted)
			}
		}
		return s
	}
}

// recoverPanic turns a resolver panic into an INTERNAL error after logging it.
func recoverPanic(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "graphql panic", "panic", fmt.Sprint(p))
		return errors.New("internal error")
	}
}
