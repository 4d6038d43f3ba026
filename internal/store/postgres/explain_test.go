package postgres

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// bigTables are the tables that grow with use; a query that scans one of them whole would
// slow down as terragate runs. leases stays a handful of rows, where a sequential scan is
// the right plan.
var bigTables = map[string]bool{"widget_sessions": true, "terra_users": true, "webhook_events": true, "audit_log": true}

// wholeTable lists the queries that read a big table whole by nature, and why that is
// acceptable: no index makes them cheaper than one pass, so the planner may pick a Seq Scan.
var wholeTable = map[string]string{
	"CountTerraUsers": "the total count of the unfiltered admin listing counts every Terra user; " +
		"it runs once per admin page, and Terra users number in the thousands, not millions",
}

// query is one named query of db/postgres/queries, in the form PostgreSQL prepares.
type query struct{ name, sql string }

var (
	nameLine = regexp.MustCompile(`(?m)^-- name: (\w+) :\w+\s*$`)
	param    = regexp.MustCompile(`@([a-z_][a-z0-9_]*)`)
)

// queries reads the sqlc query files and numbers their named parameters as sqlc does ($1 for
// the first name met, and so on), so the test checks the very SQL the engine runs.
func queries(t *testing.T) []query {
	t.Helper()
	files, err := filepath.Glob("../../../db/postgres/queries/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("query files: %v, %v", files, err)
	}
	var qs []query
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
			numbers := map[string]string{}
			sql := param.ReplaceAllStringFunc(text[m[1]:end], func(p string) string {
				name := p[1:]
				if _, ok := numbers[name]; !ok {
					numbers[name] = "$" + strconv.Itoa(len(numbers)+1)
				}
				return numbers[name]
			})
			qs = append(qs, query{name: text[m[2]:m[3]], sql: strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(sql), ";"))})
		}
	}
	return qs
}

// TestQueriesUseIndexes checks that no query scans a big table whole.
//
// Method: fill the tables with rows shaped like production (most sessions finished, most
// users active, many end users), VACUUM ANALYZE so the planner has statistics and visibility
// maps, then EXPLAIN each query's generic plan (plan_cache_mode = force_generic_plan), which
// the planner builds without looking at parameter values: the check is about the query's
// shape and the indexes, not one lucky value. Sequential scans are not disabled, so a
// missing or unusable index shows as a Seq Scan node in the JSON plan. The same run prepares
// every query, which stands in for sqlc vet's db-prepare rule on PostgreSQL.
func TestQueriesUseIndexes(t *testing.T) {
	d := open(t)
	ctx := t.Context()
	const n = 20000
	for _, sql := range []string{
		`INSERT INTO widget_sessions (id, terra_session_id, reference_id, input_key, status, expires_at, created_at, updated_at)
		 SELECT 'ws-' || i, 'terra-' || i, 'ref-' || (i % 5000), 'key-' || (i % 7),
		        CASE WHEN i % 50 = 0 THEN 'CREATED' WHEN i % 30 = 0 THEN 'EXPIRED' WHEN i % 10 = 0 THEN 'FAILED' ELSE 'COMPLETED' END,
		        timestamptz '2026-07-01 12:00:00Z' + i * interval '1 minute' + interval '15 minutes',
		        timestamptz '2026-07-01 12:00:00Z' + i * interval '1 minute',
		        timestamptz '2026-07-01 12:00:00Z' + i * interval '1 minute'
		 FROM generate_series(1, $1::int) i`,
		`INSERT INTO terra_users (user_id, reference_id, provider, active, status, scopes, connected_at, updated_at, state_at, replaced_by)
		 SELECT 'u-' || i, 'ref-' || (i % 5000), 'OURA', i % 10 <> 0,
		        CASE WHEN i % 10 = 0 THEN 'DISCONNECTED' ELSE 'CONNECTED' END, '{activity}',
		        timestamptz '2026-07-01 12:00:00Z' + i * interval '1 minute',
		        timestamptz '2026-07-01 12:00:00Z' + i * interval '1 minute',
		        timestamptz '2026-07-01 12:00:00Z' + i * interval '1 minute',
		        CASE WHEN i % 100 = 0 THEN 'u-x' || i ELSE '' END
		 FROM generate_series(1, $1::int) i`,
		// A few dead letters among many applied deliveries.
		`INSERT INTO webhook_events (dedupe_key, source, type, kind, signed_at, received_at, body, applied_at, outcome, error)
		 SELECT 'trace-' || i, (ARRAY['webhook', 'redirect', 'api', 'sync'])[i % 4 + 1],
		        (ARRAY['activity', 'sleep', 'body', 'daily', 'auth', 'deauth'])[i % 6 + 1], 'ignored',
		        now(), now(), convert_to('{"n":' || i || '}', 'UTF8'),
		        CASE WHEN i % 500 = 0 THEN NULL ELSE now() END,
		        CASE WHEN i % 500 = 0 THEN 'failed' ELSE 'ignored' END,
		        CASE WHEN i % 500 = 0 THEN 'bad data' ELSE '' END
		 FROM generate_series(1, $1::int) i`,
		`INSERT INTO audit_log (at, actor, actor_kind, action, subject, reference_id, client_ip, detail)
		 SELECT timestamptz '2026-07-01 12:00:00Z' + i * interval '1 second',
		        CASE WHEN i % 4 = 0 THEN 'svc:admin' ELSE 'ref-' || (i % 5000) END,
		        CASE WHEN i % 4 = 0 THEN 'service' ELSE 'user' END,
		        (ARRAY['session.created', 'connection.added', 'connection.removed', 'connection.disconnected', 'admin.read'])[i % 5 + 1],
		        'ws-' || i, 'ref-' || (i % 5000), '192.0.2.1', '{"n": "1"}'
		 FROM generate_series(1, $1::int) i`,
	} {
		if _, err := d.pool.Exec(ctx, sql, n); err != nil {
			t.Fatalf("fill: %v", err)
		}
	}
	if _, err := d.pool.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		t.Fatal(err)
	}

	// One connection, so that SET and PREPARE apply to the EXPLAINs.
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET plan_cache_mode; DEALLOCATE ALL")

	qs := queries(t)
	checked := 0
	for _, q := range qs {
		stmt := "q_" + strings.ToLower(q.name)
		if _, err := conn.Exec(ctx, "PREPARE "+stmt+" AS "+q.sql); err != nil {
			t.Errorf("%s: prepare: %v", q.name, err)
			continue
		}
		var nparams int
		if err := conn.QueryRow(ctx, "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = $1", stmt).Scan(&nparams); err != nil {
			t.Fatal(err)
		}
		args := strings.TrimSuffix(strings.Repeat("NULL, ", nparams), ", ")
		explain := "EXPLAIN (FORMAT JSON) EXECUTE " + stmt
		if nparams > 0 {
			explain += "(" + args + ")"
		}
		var plan []map[string]any
		if err := conn.QueryRow(ctx, explain).Scan(&plan); err != nil {
			t.Errorf("%s: explain: %v", q.name, err)
			continue
		}
		checked++
		for _, scan := range seqScans(plan[0]["Plan"]) {
			if bigTables[scan] && wholeTable[q.name] == "" {
				out, _ := json.MarshalIndent(plan, "", "  ")
				t.Errorf("%s scans %s sequentially:\n%s", q.name, scan, out)
			}
		}
	}
	if checked != len(qs) || checked < 20 {
		t.Errorf("checked %d of %d queries", checked, len(qs))
	}
}

// seqScans lists the relations a JSON plan node, or any below it, scans sequentially.
func seqScans(node any) []string {
	m, ok := node.(map[string]any)
	if !ok {
		return nil
	}
	var out []string
	if m["Node Type"] == "Seq Scan" {
		rel, _ := m["Relation Name"].(string)
		out = append(out, rel)
	}
	if plans, ok := m["Plans"].([]any); ok {
		for _, p := range plans {
			out = append(out, seqScans(p)...)
		}
	}
	return out
}
