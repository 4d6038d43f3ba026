package graph_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/terragate/terragate/graph"
)

// userHashOf is the user_hash of alice's operation in s's log.
func (s *server) userHashOf(t *testing.T) string {
	t.Helper()
	if r := s.post(`{ connectedUsers { userId } }`); len(r.Errors) > 0 {
		t.Fatalf("connectedUsers: %s", r.raw)
	}
	lines := s.logLines("graphql operation")
	if len(lines) != 1 {
		t.Fatalf("%d operation lines; want 1", len(lines))
	}
	h := topLevelValues(t, lines[0], "user_hash")
	if len(h) != 1 || h[0] == "" {
		t.Fatalf("user_hash in %s", lines[0])
	}
	return h[0]
}

// A user hash in the log cannot be reversed with a dictionary of user ids: it is keyed with
// the server's secret, and stays the same across restarts and instances sharing it.
func TestUserHashIsKeyed(t *testing.T) {
	key := []byte("user-hash-key-of-the-cluster-0123456789")
	unkeyed := sha256.Sum256([]byte("terragate user\x00alice"))
	first := start(t, graph.Options{UserHashKey: key}, nil).userHashOf(t)
	if first == hex.EncodeToString(unkeyed[:8]) {
		t.Fatalf("alice's hash %s is the unkeyed SHA-256 of her id", first)
	}
	if again := start(t, graph.Options{UserHashKey: key}, nil).userHashOf(t); again != first {
		t.Errorf("another handler with the same key: %s; want %s", again, first)
	}
	if first != graph.UserHash(key, "alice") {
		t.Errorf("logged %s; UserHash gives %s", first, graph.UserHash(key, "alice"))
	}
	if other := start(t, graph.Options{UserHashKey: []byte("another-cluster-key-0123456789abcdef")}, nil).userHashOf(t); other == first {
		t.Errorf("another key gives the same hash %s", other)
	}
	if unset := start(t, graph.Options{}, nil).userHashOf(t); unset == first || unset == hex.EncodeToString(unkeyed[:8]) {
		t.Errorf("without a key: %s, guessable or the same as with one", unset)
	}
}
