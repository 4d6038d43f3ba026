package terra

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/terragate/terragate/internal/fault"
)

// ErrUnavailable marks calls that got no usable answer from Terra at all: network
// errors, timeouts and expired deadlines. Callers map it to an "upstream" error kind.
var ErrUnavailable = fault.New(fault.UpstreamUnavailable, "upstream unavailable")

// ErrCircuitOpen marks calls refused without reaching Terra because the endpoint's circuit
// breaker is open (or half-open with its probes already in flight). Such errors also wrap
// ErrUnavailable, and RetryAfter tells how long until the breaker lets a probe through.
var ErrCircuitOpen = errors.New("circuit open")

// ErrBadResponse is wrapped by an *APIError whose status was 2xx but whose body could not
// be used (not JSON, wrong shape, required fields missing).
var ErrBadResponse = errors.New("unusable response")

// APIError is an answer from Terra that is not a usable success: any non-2xx status, or a
// 2xx whose body could not be used (then it wraps ErrBadResponse).
type APIError struct {
	// Op is the Terra operation, e.g. "generateWidgetSession".
	Op string
	// StatusCode is the HTTP status Terra answered with.
	StatusCode int
	// Message is Terra's explanation, or the HTTP status text when the body had none
	// (HTML and other non-JSON bodies are never copied here).
	Message string
	// RetryAfter is the Retry-After delay Terra asked for, zero when absent.
	RetryAfter time.Duration
}

// Error formats the error as "terra <op>: <code> <status text>: <message>".
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("terra ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	text := http.StatusText(e.StatusCode)
	if text != "" {
		b.WriteString(" ")
		b.WriteString(text)
	}
	if e.Message != "" && e.Message != text {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Kind says whether Terra failed (408, 5xx: fault.UpstreamUnavailable) or answered the
// request with a refusal (fault.UpstreamError), as IsUnavailable decides.
func (e *APIError) Kind() fault.Kind {
	if IsUnavailable(e) {
		return fault.UpstreamUnavailable
	}
	return fault.UpstreamError
}

// UpstreamStatus is the HTTP status Terra answered with.
func (e *APIError) UpstreamStatus() int { return e.StatusCode }

// UpstreamMessage is Terra's explanation, safe to show outside production.
func (e *APIError) UpstreamMessage() string { return e.Message }

// Wait is the Retry-After delay Terra asked for (zero when none).
func (e *APIError) Wait() time.Duration { return e.RetryAfter }

// Unwrap lets errors.Is(err, ErrBadResponse) single out unusable 2xx answers.
func (e *APIError) Unwrap() error {
	if e.StatusCode >= 200 && e.StatusCode < 300 {
		return ErrBadResponse
	}
	return nil
}

// IsNotFound reports whether err is Terra saying the resource (usually a user) does not exist.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound
}

// IsUnavailable reports whether err says Terra is down, slow or unreachable, rather than
// answering the request: no usable answer (a network error, a timeout, an open circuit, all
// ErrUnavailable), or an answer of 408 or 5xx. It is the one place that tells the two
// apart, for the circuit breakers and for what callers are shown; every other answer, a
// 429 included, is Terra's answer to the request.
func IsUnavailable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode == http.StatusRequestTimeout || ae.StatusCode >= 500
	}
	return errors.Is(err, ErrUnavailable)
}

// maxMessage bounds the message copied from an error body: bodies come from outside and
// end up in logs and, mapped, in client-facing errors.
const maxMessage = 300

// errorBody covers the three error shapes Terra uses: legacy {status,message}, RFC 9457
// problem+json {type,title,instance,detail} and the rate limiter's {detail}.
type errorBody struct {
	Message json.RawMessage `json:"message"`
	Detail  json.RawMessage `json:"detail"`
	Title   json.RawMessage `json:"title"`
	Error   json.RawMessage `json:"error"`
}

// parseAPIError builds the *APIError for a non-2xx answer. secrets are scrubbed from the
// message in case Terra echoes a credential back.
func parseAPIError(op string, resp *http.Response, body []byte, now time.Time, secrets ...string) *APIError {
	ae := &APIError{
		Op:         op,
		StatusCode: resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), now),
	}
	ae.Message = scrub(errorMessage(resp.Header.Get("Content-Type"), body), secrets)
	if ae.Message == "" {
		ae.Message = http.StatusText(resp.StatusCode)
	}
	return ae
}

// errorMessage extracts a human message from an error body, or "" when it has none that
// is safe to show.
func errorMessage(contentType string, body []byte) string {
	var eb errorBody
	if json.Unmarshal(body, &eb) == nil {
		for _, raw := range []json.RawMessage{eb.Detail, eb.Message, eb.Title, eb.Error} {
			if m := jsonMessage(raw); m != "" {
				return m
			}
		}
		return ""
	}
	// Plain text is sometimes useful (proxies say "upstream request timeout"), HTML
	// never is: it is a whole page and may reflect the request.
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt != "text/plain" {
		return ""
	}
	s := strings.TrimSpace(string(body))
	if strings.ContainsAny(s, "<>\n\r") || !utf8.ValidString(s) {
		return ""
	}
	return clean(s)
}

// jsonMessage reads a message that is a string or, as FastAPI validation errors are, a
// list of objects with "msg".
func jsonMessage(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return clean(s)
	}
	var items []struct {
		Msg string `json:"msg"`
	}
	if json.Unmarshal(raw, &items) == nil {
		var msgs []string
		for _, it := range items {
			if it.Msg != "" {
				msgs = append(msgs, it.Msg)
			}
		}
		return clean(strings.Join(msgs, "; "))
	}
	return ""
}

// clean makes a message one bounded line of printable text.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// parseRetryAfter reads Retry-After as delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		// Bound absurd values so the multiplication cannot overflow.
		return time.Duration(min(n, 7*24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now).Round(time.Second)
	}
	return 0
}

// unavailable wraps a transport-level failure so that both ErrUnavailable and the cause
// (context.Canceled, context.DeadlineExceeded, net errors) stay visible to errors.Is.
func unavailable(op string, cause error) error {
	return fmt.Errorf("terra %s: %w: %w", op, ErrUnavailable, cause)
}

// RetryAfter reports how long a caller should wait before trying again, when err says:
// the time until an open circuit lets a probe through, or the Retry-After Terra sent with
// an error answer. The GraphQL layer turns it into a retryAfter extension.
func RetryAfter(err error) (time.Duration, bool) {
	var ce *circuitError
	if errors.As(err, &ce) {
		return ce.wait, true
	}
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		return ae.RetryAfter, true
	}
	return 0, false
}

// circuitError is a call refused by an endpoint's circuit breaker.
type circuitError struct {
	op      string
	wait    time.Duration // until the breaker lets a probe through
	probing bool          // half-open, with its probes already in flight
}

func (e *circuitError) Error() string {
	state := "circuit open"
	if e.probing {
		state = "circuit half-open, probes in flight"
	}
	return fmt.Sprintf("terra %s: %v: %s: retry in %v", e.op, ErrUnavailable, state, e.wait.Round(100*time.Millisecond))
}

// Kind is fault.UpstreamUnavailable; Wait is how long until a probe goes through.
func (e *circuitError) Kind() fault.Kind { return fault.UpstreamUnavailable }

// Wait is how long until the breaker lets a probe through.
func (e *circuitError) Wait() time.Duration { return e.wait }

// Unwrap makes both ErrCircuitOpen and ErrUnavailable visible to errors.Is.
func (e *circuitError) Unwrap() []error { return []error{ErrCircuitOpen, ErrUnavailable} }
