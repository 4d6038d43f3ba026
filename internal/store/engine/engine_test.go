package engine

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terragate/terragate/internal/store"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct{ url, path string }{
		{"sqlite:terragate.db", "terragate.db"},
		{"sqlite:/abs/path.db", "/abs/path.db"},
		{"sqlite://terragate.db", "terragate.db"},
		{"sqlite:///abs/path.db", "/abs/path.db"},
		{"file:data/terragate.db", "data/terragate.db"},
		{"file:///abs/path.db", "/abs/path.db"},
		{"SQLite:x.db", "x.db"},
	} {
		engine, path, err := Parse(tc.url)
		if err != nil || engine != "sqlite" || path != tc.path {
			t.Errorf("Parse(%q) = %q, %q, %v; want sqlite, %q", tc.url, engine, path, err, tc.path)
		}
	}
}

func TestParseRejects(t *testing.T) {
	const secret = "s3cret"
	for _, tc := range []struct {
		url  string
		want error
	}{
		{"postgres://app:" + secret + "@db:5432/terragate", ErrUnavailable},
		{"postgresql://app:" + secret + "@db/terragate?sslmode=require", ErrUnavailable},
		{"mysql://app:" + secret + "@db/terragate", store.ErrInvalid},
		{"app:" + secret + "@db/terragate", store.ErrInvalid},
		{"terragate.db", store.ErrInvalid},
		{"", store.ErrInvalid},
		{"sqlite:", store.ErrInvalid},
		{"sqlite://", store.ErrInvalid},
		{"sqlite:x.db?mode=memory&" + secret, store.ErrInvalid},
	} {
		_, _, err := Parse(tc.url)
		if !errors.Is(err, tc.want) {
			t.Errorf("Parse(%q): %v; want %v", tc.url, err, tc.want)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, secret) || !strings.Contains(msg, Forms) {
			t.Errorf("Parse(%q) message %q: must name the accepted forms and not the URL", tc.url, msg)
		}
	}
	_, _, err := Parse("postgres://db/x")
	if !strings.Contains(err.Error(), "PostgreSQL is not available in this build yet") {
		t.Errorf("postgres message = %q", err)
	}
}

func TestOpenSQLite(t *testing.T) {
	s, err := Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "t.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(store.Inbox); !ok {
		t.Error("the SQLite store does not implement store.Inbox")
	}
	if _, err := Open(t.Context(), "sqlite::memory:", nil); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Open(sqlite::memory:): %v; want ErrInvalid", err)
	}
}
