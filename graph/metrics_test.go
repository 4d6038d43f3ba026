package graph_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/metrics"
)

// scrape returns m's exposition.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// Operation names label the metrics only for authenticated callers: anyone else could fill
// the capped places with made-up names before signing in, and every later name would read
// "other".
func TestUnauthenticatedOperationNamesMakeNoLabels(t *testing.T) {
	m := metrics.New()
	s := start(t, graph.Options{Metrics: m}, nil)
	for i := range 5 {
		r := s.postAs("", fmt.Sprintf(`query Made%dUp { connectedUsers { userId } }`, i), nil)
		if len(r.Errors) == 0 {
			t.Fatalf("unauthenticated connectedUsers answered %s", r.raw)
		}
	}
	if r := s.postAs(token(t, "alice"), `query Mine { connectedUsers { userId } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("alice's operation: %s", r.raw)
	}
	got := scrape(t, m)
	if strings.Contains(got, `operation="Made`) {
		t.Errorf("unauthenticated names became labels:\n%s", grepLines(got, "Made"))
	}
	if !strings.Contains(got, `operation="Mine"`) {
		t.Errorf("alice's operation has no label of its own:\n%s", grepLines(got, "graphql_requests_total"))
	}
	if !strings.Contains(got, `operation="other"`) {
		t.Errorf("the unauthenticated operations were not counted as other:\n%s", grepLines(got, "graphql_requests_total"))
	}
}

func grepLines(text, sub string) string {
	var out []string
	for line := range strings.SplitSeq(text, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
