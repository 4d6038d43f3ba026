package limit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// PerIP refuses requests from a client address that has run out of tokens with 429 Too
// Many Requests, a Retry-After header and a body in shape. ip says who the client is
// (behind proxies, the clientip package's resolver). IPv6 clients are limited per /64,
// the smallest block a subscriber is normally given: limiting single IPv6 addresses would
// let one machine walk through its 2^64 addresses and never be limited.
func PerIP(l *Limiter, ip func(*http.Request) netip.Addr, shape Shape, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, retryAfter := l.Allow(ipKey(ip(r)))
		if !ok {
			TooMany(w, r, shape, retryAfter)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ipKey is the bucket a client address shares.
func ipKey(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		// Requests whose address cannot be told share one bucket rather than bypass
		// the limit.
		return "unknown"
	case a.Is6():
		p, _ := a.WithZone("").Prefix(64)
		return p.String()
	default:
		return a.String()
	}
}

// TooMany answers 429 with Retry-After in whole seconds, rounded up so that a client that
// waits as told is not refused again, and the same figure in the body for clients that do
// not read headers: retryAfterSeconds in the JSON shape, the retryAfter extension (as the
// per-user limit has it) in the GraphQL shape.
func TooMany(w http.ResponseWriter, r *http.Request, shape Shape, retryAfter time.Duration) {
	secs := max(1, int64(math.Ceil(retryAfter.Seconds())))
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	if shape == GraphQL {
		writeGraphQLError(w, r, http.StatusTooManyRequests, CodeRateLimited,
			fmt.Sprintf("too many requests; retry in %d s", secs), map[string]any{"retryAfter": secs})
		return
	}
	writeJSON(w, http.StatusTooManyRequests, struct {
		Error             string `json:"error"`
		RetryAfterSeconds int64  `json:"retryAfterSeconds"`
	}{"rate limited", secs})
}

// MaxBody refuses request bodies larger than limit bytes with 413 and a body in shape. A
// Content-Length over the limit is refused before anything is read. Other bodies (chunked
// ones have no length) are read into memory up to the limit before next runs, so that a
// body that turns out too large still gets a 413 from here rather than whatever error
// the next handler makes of a failed read; GraphQL requests are small enough for that.
// WebSocket upgrades pass through untouched: their traffic is not a request body.
func MaxBody(limit int64, shape Shape, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isWebSocketUpgrade(r) || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > limit {
			tooLarge(w, r, shape, limit)
			return
		}
		var buf bytes.Buffer
		if r.ContentLength > 0 {
			buf.Grow(int(r.ContentLength))
		}
		_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			if maxErr := (*http.MaxBytesError)(nil); errors.As(err, &maxErr) {
				tooLarge(w, r, shape, limit)
				return
			}
			if errors.Is(err, ErrBodyTimeout) {
				RequestTimeout(w, r, shape)
				return
			}
			// The client went away or sent a broken body; nothing useful reaches next.
			refuse(w, r, shape, http.StatusBadRequest, CodeMalformedRequest, "could not read the request body", nil)
			return
		}
		r.Body = io.NopCloser(&buf)
		r.ContentLength = int64(buf.Len())
		next.ServeHTTP(w, r)
	})
}

func tooLarge(w http.ResponseWriter, r *http.Request, shape Shape, limit int64) {
	// The rest of the body is not wanted; closing spares the server reading it.
	w.Header().Set("Connection", "close")
	refuse(w, r, shape, http.StatusRequestEntityTooLarge, CodeRequestTooLarge,
		fmt.Sprintf("request body larger than %d bytes", limit), map[string]any{"maxBytes": limit})
}

func isWebSocketUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && headerHasToken(r.Header, "Connection", "upgrade") &&
		strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), "websocket")
}

// headerHasToken reports whether a comma-separated header holds token, in any case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
