package db

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestAuditQueriesAppendOnly checks that no query of either engine changes or removes audit
// entries: the audit log's queries insert (without an upsert) or select, nothing else. The
// database's triggers refuse the rest; this keeps such a query from being written at all.
func TestAuditQueriesAppendOnly(t *testing.T) {
	nameLine := regexp.MustCompile(`(?m)^-- name: (\w+) :\w+\s*$`)
	comment := regexp.MustCompile(`--[^\n]*`)
	changes := regexp.MustCompile(`(?i)\b(update|delete|truncate|replace|merge|alter|drop)\b`)
	for _, engine := range []string{"sqlite", "postgres"} {
		files, err := filepath.Glob(filepath.Join(engine, "queries", "*.sql"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s queries: %v, %v", engine, files, err)
		}
		found := 0
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			text := string(b)
			marks := nameLine.FindAllStringSubmatchIndex(text, -1)
			for i, m := range marks {
				end := len(text)
				if i+1 < len(marks) {
					end = marks[i+1][0]
				}
				name := text[m[2]:m[3]]
				sql := strings.TrimSpace(comment.ReplaceAllString(text[m[1]:end], ""))
				if !strings.Contains(sql, "audit_log") {
					continue
				}
				found++
				verb := strings.ToUpper(strings.Fields(sql)[0])
				if verb != "INSERT" && verb != "SELECT" || changes.MatchString(sql) ||
					strings.Contains(strings.ToUpper(sql), "ON CONFLICT") {
					t.Errorf("%s %s may change the audit log:\n%s", engine, name, sql)
				}
			}
		}
		if found < 2 {
			t.Errorf("%s: %d audit log queries found; want its insert and listings", engine, found)
		}
	}
}

func TestQuery(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		q, err := Query(engine, "ListActiveTerraUsers")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(q, "SELECT * FROM terra_users") || !strings.Contains(q, "AND active") ||
			!strings.HasSuffix(q, "ORDER BY connected_at, user_id") {
			t.Errorf("%s ListActiveTerraUsers = %q", engine, q)
		}
		// A name that is a prefix of another must not match it.
		if q, err := Query(engine, "ListTerraUsers"); err != nil || strings.Contains(q, "AND active") {
			t.Errorf("%s ListTerraUsers = %q, %v", engine, q, err)
		}
	}
	if _, err := Query("sqlite", "NoSuchQuery"); err == nil {
		t.Error("an unknown query name must be an error")
	}
	if _, err := Query("oracle", "ListTerraUsers"); err == nil {
		t.Error("an unknown engine must be an error")
	}
}
