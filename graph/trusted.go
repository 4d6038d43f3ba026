package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/terragate/terragate/internal/metrics"
	"github.com/terragate/terragate/internal/trusted"
)

// CodePersistedQueryNotFound refuses a document id the gateway does not know, and, with
// trusted documents enforced, any document that is not one of them. It is APQ's code, so
// clients that speak APQ or persisted documents already handle it.
const CodePersistedQueryNotFound = "PERSISTED_QUERY_NOT_FOUND"

// unlistedSeen bounds the document hashes whose first sighting has been logged.
const unlistedSeen = 1000

// trustedDocuments runs the trusted documents and, in trusted.Enforce mode, refuses every
// other document before it is parsed, so nothing of it runs. A document is named by its id
// (the persisted query's hash, where a documentId arrives too), or sent as text and found
// by the hash of that text. It must come before APQ, so that APQ can neither register nor
// run a document that is not trusted.
type trustedDocuments struct {
	docs    *trusted.Documents
	mode    trusted.Mode
	metrics *metrics.Metrics
	log     *slog.Logger
	// seen holds the hashes of unlisted documents already logged: one line for each
	// document, not one per request, tells an operator which clients still send them.
	seen graphql.Cache[string]
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = (*trustedDocuments)(nil)

func newTrustedDocuments(docs *trusted.Documents, mode trusted.Mode, m *metrics.Metrics, log *slog.Logger) *trustedDocuments {
	return &trustedDocuments{docs: docs, mode: mode, metrics: m, log: log, seen: lru.New[string](unlistedSeen)}
}

func (*trustedDocuments) ExtensionName() string                   { return "TrustedDocuments" }
func (*trustedDocuments) Validate(graphql.ExecutableSchema) error { return nil }

func (t *trustedDocuments) MutateOperationParameters(ctx context.Context, raw *graphql.RawParams) *gqlerror.Error {
	var hash string
	switch {
	case raw.Query != "":
		hash = trusted.Hash(raw.Query) // a claimed hash that differs is APQ's to refuse
	case persistedHash(raw.Extensions) != "":
		hash = persistedHash(raw.Extensions)
	default:
		return nil // no document at all: gqlgen says so
	}
	if doc, ok := t.docs.Lookup(hash); ok {
		raw.Query = doc
		return nil
	}
	if t.mode == trusted.AllowUnlisted {
		t.metrics.UnlistedDocument()
		if _, logged := t.seen.Get(ctx, hash); !logged {
			t.seen.Add(ctx, hash, "")
			t.log.InfoContext(ctx, "graphql document not among the trusted documents", "hash", hash, "operation", raw.OperationName, "sent_text", raw.Query != "")
		}
		return nil
	}
	msg := "only the app's trusted documents run here: send the documentId of one from its manifest"
	if raw.Query == "" {
		msg = "no trusted document has this id"
	}
	return &gqlerror.Error{Message: msg, Extensions: map[string]any{"code": CodePersistedQueryNotFound}}
}

// persistedHash is APQ's extensions.persistedQuery.sha256Hash, or "".
func persistedHash(ext map[string]any) string {
	pq, _ := ext["persistedQuery"].(map[string]any)
	h, _ := pq["sha256Hash"].(string)
	return h
}

// documentIDs lets one of gqlgen's HTTP transports take the GraphQL-over-HTTP
// persisted-documents form, {"documentId": "sha256:<hex>"} in a POST body or ?documentId=
// on a GET, which gqlgen does not read: the id goes on to the executor as the persisted
// query's hash, where trustedDocuments (and APQ) look for a document by its id.
type documentIDs struct{ graphql.Transport }

func (t documentIDs) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	if id := documentIDOf(r); id != "" {
		exec = withDocumentID{exec, id}
	}
	t.Transport.Do(w, r, exec)
}

// documentIDOf reads a request's documentId, leaving the body as it was. A body that does
// not decode has none: the transport reports what is wrong with it.
func documentIDOf(r *http.Request) string {
	if r.Method == http.MethodGet {
		return r.URL.Query().Get("documentId")
	}
	if r.Body == nil {
		return ""
	}
	body, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return ""
	}
	if !bytes.Contains(body, []byte(`"documentId"`)) {
		return "" // most bodies carry a query: no need to decode them twice
	}
	var req struct {
		DocumentID string `json:"documentId"`
	}
	_ = json.Unmarshal(body, &req)
	return req.DocumentID
}

// withDocumentID hands a request's documentId to the executor in the extensions.
type withDocumentID struct {
	graphql.GraphExecutor
	id string
}

func (e withDocumentID) CreateOperationContext(ctx context.Context, params *graphql.RawParams) (*graphql.OperationContext, gqlerror.List) {
	params.Extensions = trusted.WithDocumentID(params.Extensions, e.id)
	return e.GraphExecutor.CreateOperationContext(ctx, params)
}
