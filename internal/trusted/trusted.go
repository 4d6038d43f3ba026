// Package trusted holds the trusted documents: the GraphQL documents an app was built with,
// by the SHA-256 hash of their text, in the manifest graphql-codegen's client preset emits
// (persisted-documents.json, {"sha256:<hex>": "<document>"}). The GraphQL handler runs those
// and, in Enforce mode, refuses every other document before parsing it.
package trusted

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Mode is what becomes of a document that is not in the manifest.
type Mode uint8

const (
	// Enforce refuses it (PERSISTED_QUERY_NOT_FOUND): only the app's own documents run.
	Enforce Mode = iota
	// AllowUnlisted runs it, and counts it, while an app that sends document ids is rolled
	// out: when nothing unlisted is seen any more, Enforce is safe.
	AllowUnlisted
)

// ParseMode reads TRUSTED_DOCUMENTS_MODE: enforce or allow-unlisted.
func ParseMode(s string) (Mode, error) {
	switch strings.TrimSpace(s) {
	case "enforce":
		return Enforce, nil
	case "allow-unlisted":
		return AllowUnlisted, nil
	}
	return Enforce, fmt.Errorf("want enforce or allow-unlisted, got %q", s)
}

func (m Mode) String() string {
	if m == AllowUnlisted {
		return "allow-unlisted"
	}
	return "enforce"
}

// idPrefix marks a SHA-256 document id in the GraphQL-over-HTTP persisted-documents
// convention, which the client preset follows; APQ's sha256Hash is the bare hex.
const idPrefix = "sha256:"

// Documents are the trusted documents, by hash. The zero value and nil hold none.
type Documents struct {
	byHash map[string]string // lower-case hex SHA-256 of the text -> the text
	files  []string
}

// Load reads the manifests at paths, comma-separated: one, or several while older app
// versions that sent the documents of an older manifest are still in use. Every entry's
// key must be the SHA-256 of its document (the client preset's default hash); an error
// names the file and the entry.
func Load(paths string) (*Documents, error) {
	d := &Documents{byHash: map[string]string{}}
	for p := range strings.SplitSeq(paths, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if err := d.add(p, data); err != nil {
			return nil, err
		}
		d.files = append(d.files, p)
	}
	if len(d.files) == 0 {
		return nil, errors.New("want the path of a persisted-documents.json manifest")
	}
	return d, nil
}

// Parse reads one manifest's content; name says where it came from, in errors.
func Parse(name string, data []byte) (*Documents, error) {
	d := &Documents{byHash: map[string]string{}, files: []string{name}}
	if err := d.add(name, data); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Documents) add(name string, data []byte) error {
	var entries map[string]any
	if err := json.Unmarshal(data, &entries); err != nil {
		return fmt.Errorf("%s: not a manifest of persisted documents ({\"sha256:<hash>\": \"<document>\"}): %w", name, err)
	}
	if len(entries) == 0 {
		return fmt.Errorf("%s: lists no documents", name)
	}
	for key, v := range entries {
		doc, ok := v.(string)
		if !ok || doc == "" {
			return fmt.Errorf("%s: entry %q: want the document's text", name, key)
		}
		hash := strings.ToLower(strings.TrimPrefix(key, idPrefix))
		if _, err := hex.DecodeString(hash); err != nil || len(hash) != sha256.Size*2 {
			return fmt.Errorf("%s: entry %q: not a SHA-256 hash (the client preset's hashAlgorithm must be sha256, its default)", name, key)
		}
		if Hash(doc) != hash {
			return fmt.Errorf("%s: entry %q: the hash is not the SHA-256 of its document (edited by hand, or hashed another way)", name, key)
		}
		d.byHash[hash] = doc
	}
	return nil
}

// Hash is the id of a document's text: the lower-case hex SHA-256, as APQ's sha256Hash.
func Hash(doc string) string {
	sum := sha256.Sum256([]byte(doc))
	return hex.EncodeToString(sum[:])
}

// Lookup returns the document of an id: the hex hash, with or without "sha256:".
func (d *Documents) Lookup(id string) (string, bool) {
	if d == nil {
		return "", false
	}
	doc, ok := d.byHash[strings.ToLower(strings.TrimPrefix(id, idPrefix))]
	return doc, ok
}

// Len is the number of distinct documents.
func (d *Documents) Len() int {
	if d == nil {
		return 0
	}
	return len(d.byHash)
}

// Files are the manifests the documents were read from.
func (d *Documents) Files() []string {
	if d == nil {
		return nil
	}
	return d.files
}

// WithDocumentID returns ext with the persisted query's hash (APQ's
// extensions.persistedQuery.sha256Hash) set to documentID, the GraphQL-over-HTTP form of
// the same thing ({"documentId": "sha256:<hex>"}), which gqlgen's transports do not read:
// the transports that take a documentId hand it on this way, so one extension reads both.
// ext is not changed.
func WithDocumentID(ext map[string]any, documentID string) map[string]any {
	out := make(map[string]any, len(ext)+1)
	for k, v := range ext {
		out[k] = v
	}
	out["persistedQuery"] = map[string]any{"version": 1, "sha256Hash": strings.TrimPrefix(documentID, idPrefix)}
	return out
}
