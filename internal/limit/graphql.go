package limit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/terragate/terragate/internal/httplog"
)

// Shape is how a refusal is written: in the form the endpoint's clients already parse.
type Shape int

const (
	// JSON writes {"error": "..."} (with retryAfterSeconds for a rate limit), for plain
	// HTTP endpoints.
	JSON Shape = iota
	// GraphQL writes a GraphQL response, {"errors":[{"message":...,"extensions":{"code":
	// ...}}]}, so GraphQL clients handle a refusal like any other error, by its code.
	GraphQL
)

// Codes of the refusals in the GraphQL shape, in extensions.code.
const (
	// CodeRateLimited is the per-IP limit; it is the per-user limit's code too, so
	// clients back off the same way from both.
	CodeRateLimited = "RATE_LIMITED"
	// CodeRequestTooLarge is a body over the MaxBody limit (HTTP 413).
	CodeRequestTooLarge = "REQUEST_TOO_LARGE"
	// CodeBatchingNotSupported is a JSON array of operations (HTTP 400).
	CodeBatchingNotSupported = "BATCHING_NOT_SUPPORTED"
	// CodeMalformedRequest is a body or query string that is not one GraphQL request
	// (HTTP 400).
	CodeMalformedRequest = "MALFORMED_REQUEST"
	// CodeUnsupportedMediaType is a POST that is not application/json (HTTP 415), such
	// as what a plain HTML form can send.
	CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
	// CodeMethodNotAllowed is a method other than GET, POST and OPTIONS (HTTP 405).
	CodeMethodNotAllowed = "METHOD_NOT_ALLOWED"
)

// SingleOperation lets through only what the GraphQL handler can take as one operation,
// and refuses the rest with a GraphQL error of its own code before gqlgen sees it:
//
//   - a JSON array (a batch): terragate runs one operation per request, so one request
//     cannot multiply the work that the per-request limits (depth, aliases, complexity,
//     rate) account for;
//   - a POST body that is not a JSON object with a string query (or documentId, a
//     persisted document's id) and operationName and object variables and extensions,
//     and a GET whose variables or extensions are not JSON objects: gqlgen's own message
//     for these quotes the request back, tokens and all;
//   - a POST that is not application/json, which is all a plain HTML form can send, and
//     methods other than GET, POST and OPTIONS.
//
// It reads the whole body, so it must run inside MaxBody. The check only scans the JSON:
// variables are not decoded into values, which gqlgen does next anyway.
func SingleOperation(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isWebSocketUpgrade(r) {
			next.ServeHTTP(w, r) // its messages are checked by the transport
			return
		}
		switch r.Method {
		case http.MethodOptions:
		case http.MethodPost:
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
				writeGraphQLError(w, r, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
					"send GraphQL requests as POST with Content-Type: application/json, or queries as GET", nil)
				return
			}
			var buf bytes.Buffer
			if r.ContentLength > 0 {
				buf.Grow(int(r.ContentLength))
			}
			if _, err := buf.ReadFrom(r.Body); err != nil {
				writeGraphQLError(w, r, http.StatusBadRequest, CodeMalformedRequest, "could not read the request body", nil)
				return
			}
			if code, msg := checkBody(buf.Bytes()); code != "" {
				writeGraphQLError(w, r, http.StatusBadRequest, code, msg, nil)
				return
			}
			r.Body = readCloser{bytes.NewReader(buf.Bytes())}
		case http.MethodGet:
			if msg := checkQueryString(r.URL.RawQuery); msg != "" {
				writeGraphQLError(w, r, http.StatusBadRequest, CodeMalformedRequest, msg, nil)
				return
			}
		default:
			w.Header().Set("Allow", "GET, POST, OPTIONS")
			writeGraphQLError(w, r, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
				"send GraphQL requests as POST, or queries as GET", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// checkBody returns the code and message refusing body, or "" when it is one request.
// The messages never quote the body: it may hold a token or a user's data.
func checkBody(body []byte) (code, msg string) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return CodeMalformedRequest, `the request body is empty; send {"query": "..."}`
	}
	if trimmed[0] == '[' {
		return CodeBatchingNotSupported, "batched requests (a JSON array of operations) are not supported; send one operation per request"
	}
	const notObject = `the request body must be a JSON object such as {"query": "..."}`
	if trimmed[0] != '{' {
		return CodeMalformedRequest, notObject // null would decode as an empty request
	}
	// The fields gqlgen decodes, matched as it matches them (encoding/json, so keys in
	// any case, the last of duplicates winning), kept raw so that checking costs no more
	// than scanning.
	var req struct {
		Query         json.RawMessage `json:"query"`
		DocumentID    json.RawMessage `json:"documentId"`
		OperationName json.RawMessage `json:"operationName"`
		Variables     json.RawMessage `json:"variables"`
		Extensions    json.RawMessage `json:"extensions"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return CodeMalformedRequest, fmt.Sprintf("the request body is not valid JSON (at byte %d)", syntax.Offset)
		}
		return CodeMalformedRequest, notObject
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		want byte
	}{
		{"query", req.Query, '"'},
		{"documentId", req.DocumentID, '"'},
		{"operationName", req.OperationName, '"'},
		{"variables", req.Variables, '{'},
		{"extensions", req.Extensions, '{'},
	} {
		if !kindOrNull(f.raw, f.want) {
			return CodeMalformedRequest, fmt.Sprintf("the request's %s must be %s", f.name, kindName(f.want))
		}
	}
	return "", ""
}

// checkQueryString returns why a GET request's query string is not one request, or "".
func checkQueryString(raw string) string {
	if raw == "" {
		return ""
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "the query string is malformed"
	}
	for _, name := range []string{"variables", "extensions"} {
		if v := q.Get(name); v != "" {
			if b := []byte(strings.TrimSpace(v)); !json.Valid(b) || !kindOrNull(b, '{') {
				return fmt.Sprintf("the %s parameter must be a JSON object", name)
			}
		}
	}
	return ""
}

// kindOrNull reports whether raw (valid JSON, or empty when the field is absent) is null
// or a value starting with want.
func kindOrNull(raw []byte, want byte) bool {
	return len(raw) == 0 || raw[0] == want || string(raw) == "null"
}

func kindName(b byte) string {
	if b == '"' {
		return "a string"
	}
	return "a JSON object"
}

// refuse writes a refusal in shape. The JSON shape carries the message alone.
func refuse(w http.ResponseWriter, r *http.Request, shape Shape, status int, code, msg string, ext map[string]any) {
	if shape == GraphQL {
		writeGraphQLError(w, r, status, code, msg, ext)
		return
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

// writeGraphQLError answers with one GraphQL error, as the GraphQL error presenter would:
// the code and the request id support asks for in extensions.
func writeGraphQLError(w http.ResponseWriter, r *http.Request, status int, code, msg string, ext map[string]any) {
	extensions := map[string]any{"code": code}
	if id := httplog.RequestID(r.Context()); id != "" {
		extensions["requestId"] = id
	}
	for k, v := range ext {
		extensions[k] = v
	}
	type gqlError struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	}
	w.Header().Set("Content-Type", graphQLContentType(r))
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Errors []gqlError `json:"errors"`
	}{[]gqlError{{msg, extensions}}})
}

// graphQLContentType is the GraphQL-over-HTTP media type when the client asks for it,
// as gqlgen answers, and application/json otherwise.
func graphQLContentType(r *http.Request) string {
	for _, v := range r.Header.Values("Accept") {
		for t := range strings.SplitSeq(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(t)); err == nil && mt == "application/graphql-response+json" {
				return "application/graphql-response+json"
			}
		}
	}
	return "application/json"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
