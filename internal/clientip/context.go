package clientip

import (
	"context"
	"net/http"
	"net/netip"
)

type ctxKey struct{}

// Into records each request's client address in its context, for the audit log.
func Into(res *Resolver, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), ctxKey{}, res.ClientIP(r))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// FromContext returns the address Into recorded, if any.
func FromContext(ctx context.Context) (netip.Addr, bool) {
	a, ok := ctx.Value(ctxKey{}).(netip.Addr)
	return a, ok && a.IsValid()
}
