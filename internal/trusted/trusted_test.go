package trusted

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	providers = "query Providers { providers { name } }"
	users     = "query ConnectedUsers { connectedUsers { userId } }"
)

func manifest(entries ...string) string {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < len(entries); i += 2 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"` + entries[i] + `": "` + entries[i+1] + `"`)
	}
	b.WriteString("}")
	return b.String()
}

func TestParse(t *testing.T) {
	d, err := Parse("m.json", []byte(manifest("sha256:"+Hash(providers), providers, Hash(users), users)))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"sha256:" + Hash(providers), Hash(providers), strings.ToUpper(Hash(providers))} {
		if doc, ok := d.Lookup(id); !ok || doc != providers {
			t.Errorf("Lookup(%q) = %q, %v", id, doc, ok)
		}
	}
	if doc, ok := d.Lookup("sha256:" + Hash(users)); !ok || doc != users {
		t.Errorf("Lookup(users) = %q, %v", doc, ok)
	}
	if _, ok := d.Lookup(Hash("{ __typename }")); ok {
		t.Error("an unlisted document was found")
	}
	if d.Len() != 2 {
		t.Errorf("Len = %d", d.Len())
	}
	var none *Documents
	if _, ok := none.Lookup(Hash(providers)); ok || none.Len() != 0 {
		t.Error("nil Documents hold something")
	}
}

func TestParseRefuses(t *testing.T) {
	for name, c := range map[string]struct{ data, want string }{
		"not JSON":        {`{"sha256:`, "not a manifest"},
		"a list":          {`["query { a }"]`, "not a manifest"},
		"empty":           {`{}`, "lists no documents"},
		"not a string":    {`{"sha256:` + Hash(providers) + `": 1}`, "want the document's text"},
		"sha1":            {manifest("3a1b7bc4b8bd6ba2d3b0a1f6f2fd2a3de8d5e4b1", providers), "not a SHA-256 hash"},
		"edited document": {manifest("sha256:"+Hash(providers), users), "is not the SHA-256 of its document"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("app/persisted-documents.json", []byte(c.data))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "app/persisted-documents.json") {
				t.Errorf("err = %v, want one naming the file and %q", err, c.want)
			}
		})
	}
	_, err := Parse("m.json", []byte(manifest("sha256:"+Hash(providers), users)))
	if err == nil || !strings.Contains(err.Error(), Hash(providers)) {
		t.Errorf("err = %v, want it to name the entry", err)
	}
}

func TestLoadSeveralManifests(t *testing.T) {
	dir := t.TempDir()
	old, cur := filepath.Join(dir, "v1.json"), filepath.Join(dir, "v2.json")
	if err := os.WriteFile(old, []byte(manifest("sha256:"+Hash(providers), providers)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cur, []byte(manifest("sha256:"+Hash(users), users)), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Load(old + ", " + cur)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 2 || len(d.Files()) != 2 {
		t.Errorf("Len %d, Files %v", d.Len(), d.Files())
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("a missing file: %v", err)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"enforce": Enforce, "allow-unlisted": AllowUnlisted} {
		if m, err := ParseMode(in); err != nil || m != want || m.String() != in {
			t.Errorf("ParseMode(%q) = %v, %v", in, m, err)
		}
	}
	if _, err := ParseMode("off"); err == nil {
		t.Error("ParseMode(off) succeeded")
	}
}

func TestWithDocumentID(t *testing.T) {
	in := map[string]any{"other": true}
	out := WithDocumentID(in, "sha256:"+Hash(users))
	pq, _ := out["persistedQuery"].(map[string]any)
	if pq["sha256Hash"] != Hash(users) || pq["version"] != 1 || out["other"] != true {
		t.Errorf("WithDocumentID = %v", out)
	}
	if _, changed := in["persistedQuery"]; changed {
		t.Error("the extensions passed in were changed")
	}
}
