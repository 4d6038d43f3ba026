package tracing

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// Transport returns a RoundTripper that wraps each request to Terra in a client span named
// "<METHOD> <path>" and passes the trace context on in a traceparent header. Nil base means
// http.DefaultTransport.
//
// Terra's URLs carry user ids in their queries, so the span never sees one: the request is
// handed to the instrumentation with its query, fragment and user info removed and given
// its whole URL back just before base sends it; errors are recorded with the query cut
// out of their messages, and returned to the caller as base returned them.
func Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	inner := otelhttp.NewTransport(restoreURL{base},
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return r.Method + " " + r.URL.EscapedPath()
		}),
	)
	return stripURL{inner}
}

// fullURL carries a request's own URL past the instrumentation.
type fullURL struct{}

// stripURL hides a request's query from the instrumentation inside it.
type stripURL struct{ next http.RoundTripper }

func (t stripURL) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL == nil {
		return t.next.RoundTrip(r)
	}
	bare := *r.URL
	bare.RawQuery, bare.ForceQuery, bare.Fragment, bare.RawFragment, bare.User = "", false, "", "", nil
	c := r.Clone(context.WithValue(r.Context(), fullURL{}, r.URL))
	c.URL = &bare
	resp, err := t.next.RoundTrip(c)
	if re, ok := err.(*redactedError); ok {
		err = re.err
	}
	return resp, err
}

// restoreURL gives a request its whole URL back before base sends it.
type restoreURL struct{ base http.RoundTripper }

func (t restoreURL) RoundTrip(r *http.Request) (*http.Response, error) {
	u, ok := r.Context().Value(fullURL{}).(*url.URL)
	if !ok {
		return t.base.RoundTrip(r)
	}
	c := r.Clone(r.Context())
	c.URL = u
	resp, err := t.base.RoundTrip(c)
	if err != nil {
		return resp, &redactedError{err: err, secrets: secretsOf(u)}
	}
	return resp, nil
}

// secretsOf are the parts of a URL kept out of spans, as they may appear in error messages.
func secretsOf(u *url.URL) []string {
	var s []string
	for _, v := range []string{u.RawQuery, u.Query().Encode(), u.RawFragment, u.Fragment, u.User.String()} {
		if v != "" {
			s = append(s, v)
		}
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			if v != "" {
				s = append(s, v, url.QueryEscape(v))
			}
		}
	}
	return s
}

// redactedError is base's error as the instrumentation records it, with the request's
// query cut out of its message; stripURL unwraps it again.
type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		msg = strings.ReplaceAll(msg, s, "REDACTED")
	}
	return msg
}

func (e *redactedError) Unwrap() error { return e.err }

// ErrorType names the type of base's error, for the span's error.type.
func (e *redactedError) ErrorType() string { return fmt.Sprintf("%T", e.err) }
