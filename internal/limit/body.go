package limit

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// ErrBodyTimeout is what reading a request body returns once the client has stopped
// sending it for longer than IdleBody allows, or has taken longer than BodyDeadline's
// total. Handlers answer it with 408 (see RequestTimeout).
var ErrBodyTimeout = errors.New("request body arrived too slowly")

// CodeRequestTimeout is a body that stopped arriving or took too long (HTTP 408).
const CodeRequestTimeout = "REQUEST_TIMEOUT"

// IdleBody cuts request bodies that stop arriving: each read of the body must receive a
// byte within idle, or it fails with ErrBodyTimeout. http.Server's ReadHeaderTimeout
// covers only the headers, and endpoints such as the webhook are unauthenticated until
// the whole body is read, so without this a client could hold a connection and a
// goroutine open for ever by sending nothing more. It must wrap the server's handler
// directly (it sets the connection's read deadline through http.ResponseController).
// Requests without a body, WebSocket upgrades among them, pass through untouched.
func IdleBody(idle time.Duration, next http.Handler) http.Handler {
	if idle <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = &timedBody{body: r.Body, rc: http.NewResponseController(w), idle: idle}
		next.ServeHTTP(w, r)
	})
}

// BodyDeadline gives the whole request body total to arrive, on top of IdleBody's limit
// between bytes: a client trickling a byte at a time would otherwise hold a request open
// for as long as it liked. It must sit inside IdleBody, whose body it shortens; without
// IdleBody around it, it does nothing.
func BodyDeadline(total time.Duration, next http.Handler) http.Handler {
	if total <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, ok := r.Body.(*timedBody); ok {
			b.end = time.Now().Add(total)
		}
		next.ServeHTTP(w, r)
	})
}

// RequestTimeout answers a body that timed out with 408, and a body in shape. The
// connection is closed: what remains of the body is not wanted.
func RequestTimeout(w http.ResponseWriter, r *http.Request, shape Shape) {
	w.Header().Set("Connection", "close")
	refuse(w, r, shape, http.StatusRequestTimeout, CodeRequestTimeout, "request body arrived too slowly", nil)
}

// timedBody moves the connection's read deadline before each read of the body. At the
// body's end net/http clears the deadline itself before it reads the connection in the
// background, so a handler that runs on after its body is never cut short.
type timedBody struct {
	body io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	end  time.Time // zero: no total deadline
	done bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	if b.done {
		return b.body.Read(p)
	}
	deadline := time.Now().Add(b.idle)
	if !b.end.IsZero() && b.end.Before(deadline) {
		deadline = b.end
	}
	if err := b.rc.SetReadDeadline(deadline); err != nil {
		// A connection that cannot take a deadline (HTTP/2 before Go supported it, a
		// test recorder) is read as it is.
		b.done = true
		return b.body.Read(p)
	}
	n, err := b.body.Read(p)
	if err != nil {
		b.done = true
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return n, fmt.Errorf("%w: %w", ErrBodyTimeout, err)
		}
	}
	return n, err
}

func (b *timedBody) Close() error { return b.body.Close() }
