package auth

import (
	"net/http"
	"strings"
)

// FromRequest returns the bearer token in r's Authorization header. The
// scheme is matched case-insensitively and surrounding spaces are ignored.
// A missing or empty header, another scheme, or more than one Authorization
// header is an [ErrUnauthenticated] error.
func FromRequest(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", unauthenticated("missing bearer token")
	case 1:
	default:
		// Proxies and servers disagree on which of several headers counts.
		return "", unauthenticated("more than one authorization header")
	}
	return ParseBearer(values[0])
}

// ParseBearer returns the token of an Authorization value such as "Bearer x": the header
// of an HTTP request, or the Authorization field of a WebSocket connection_init payload.
func ParseBearer(header string) (string, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return "", unauthenticated("missing bearer token")
	}
	scheme, token, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", unauthenticated("unsupported authorization scheme")
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", unauthenticated("missing bearer token")
	}
	if strings.ContainsAny(token, " \t") {
		return "", unauthenticated("malformed bearer token")
	}
	return token, nil
}

// Middleware records in each request's context who is calling: the [User]
// when the bearer token verifies, otherwise the reason it did not (a request
// without a token records "missing bearer token"). It never rejects a request
// itself: GraphQL reports authentication failures as GraphQL errors, and the
// playground and health checks work without a token.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		token, err := FromRequest(r)
		if err == nil {
			var user User
			if user, err = v.Verify(token); err == nil {
				ctx = WithUser(ctx, user)
			}
		}
		if err != nil {
			ctx = WithError(ctx, err)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
