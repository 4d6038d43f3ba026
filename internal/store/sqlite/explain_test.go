package sqlite

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestQueriesUseIndexes checks that no query scans a big table whole, as the PostgreSQL
// engine's test of the same name does. SQLite plans without statistics unless ANALYZE ran,
// which terragate never runs, so the plan of a fresh database is the plan production gets.
// EXPLAIN QUERY PLAN says "SCAN <table>" for a full table scan and adds "USING ... INDEX"
// when it walks an index instead.
func TestQueriesUseIndexes(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	big := map[string]bool{"widget_sessions": true, "terra_users": true, "webhook_events": true, "audit_log": true}
	nameLine := regexp.MustCompile(`(?m)^-- name: (\w+) :\w+\s*$`)
	param := regexp.MustCompile(`@[a-z_][a-z0-9_]*`)
	fullScan := regexp.MustCompile(`^SCAN (\w+)$`)
	// The reads every request makes must not sort either: their index gives the order.
	noSort := map[string]bool{"ListActiveTerraUsers": true, "ListTerraUsers": true}
	sorted := 0
	files, err := filepath.Glob("../../../db/sqlite/queries/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("query files: %v, %v", files, err)
	}
	checked := 0
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
			// NULL for every parameter: the plan depends on the query's shape, not on values.
			sql := param.ReplaceAllString(text[m[1]:end], "NULL")
			rows, err := d.read.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+sql)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				if m := fullScan.FindStringSubmatch(detail); m != nil && big[m[1]] {
					t.Errorf("%s scans %s whole: %s", name, m[1], detail)
				}
				if noSort[name] {
					sorted++
					if strings.Contains(detail, "TEMP B-TREE") {
						t.Errorf("%s sorts its rows: %s", name, detail)
					}
				}
			}
			if err := rows.Close(); err != nil {
				t.Fatal(err)
			}
			checked++
		}
	}
	if sorted < len(noSort) {
		t.Errorf("plans of %d of the %d unsorted queries seen", sorted, len(noSort))
	}
	if checked < 20 {
		t.Errorf("checked %d queries; want every query", checked)
	}
}
