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
	"github.com/terragate/terragate/internal/fault"
	"github.com/terragate/terragate/internal/httplog"
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

// classify maps an error to its code, message and extensions by its kind (package fault):
// the presenter knows no package's error types. hideDetails (production) leaves out what
// Terra said, keeping only its status.
func classify(err error, hideDetails bool) (code, msg string, ext map[string]any) {
	kind := fault.KindOf(err)
	if kind == fault.Internal && errors.Is(err, context.DeadlineExceeded) {
		kind = fault.UpstreamUnavailable // the only slow dependency a request waits for
	}
	switch kind {
	case fault.RateLimited:
		return CodeRateLimited, err.Error(), waitExtension(err, map[string]any{})
	case fault.Unauthenticated:
		return CodeUnauthenticated, "not signed in: " + unauthReason(err), nil
	case fault.Forbidden:
		return CodeForbidden, "forbidden: " + unauthReason(err), nil
	case fault.Invalid:
		// Input the caller can correct, or data the store refused that is no single
		// argument: the message says what, and never carries a driver's text.
		var f fault.Fielder
		if errors.As(err, &f) {
			return CodeBadUserInput, err.Error(), map[string]any{"field": f.FieldName()}
		}
		return CodeBadUserInput, err.Error(), nil
	case fault.TooManySubscriptions:
		return CodeTooManySubs, err.Error(), nil
	case fault.ReplayFailed:
		return CodeReplayFailed, err.Error(), nil
	case fault.Conflict:
		return CodeConflict, "conflict: the record is not in a state that allows this", nil
	case fault.NotFound:
		return CodeNotFound, "not found", nil
	case fault.UpstreamUnavailable:
		msg := "Terra is unavailable right now; try again shortly"
		var up fault.Upstream
		if errors.As(err, &up) {
			msg = fmt.Sprintf("Terra is unavailable right now (it answered %d %s); try again shortly", up.UpstreamStatus(), http.StatusText(up.UpstreamStatus()))
		}
		return CodeUpstreamUnavailable, msg, upstreamExtensions(err)
	case fault.UpstreamError:
		var up fault.Upstream
		if !errors.As(err, &up) {
			return CodeUpstreamError, "Terra refused the request", upstreamExtensions(err)
		}
		status := up.UpstreamStatus()
		msg := fmt.Sprintf("Terra answered %d %s", status, http.StatusText(status))
		if m := up.UpstreamMessage(); !hideDetails && m != "" && m != http.StatusText(status) {
			msg += ": " + m
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
	var up fault.Upstream
	if errors.As(err, &up) {
		ext["status"] = up.UpstreamStatus()
	}
	return waitExtension(err, ext)
}

// waitExtension adds retryAfter, whole seconds rounded up, when err says how long to wait:
// the one name for the wait in every error.
func waitExtension(err error, ext map[string]any) map[string]any {
	var w fault.Waiter
	if errors.As(err, &w) && w.Wait() > 0 {
		ext["retryAfter"] = retrySeconds(w.Wait())
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
