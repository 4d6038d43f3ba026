package bench

import (
	"context"
	"strings"
	"testing"

	"github.com/terragate/terragate/internal/store/postgres/pgtest"
)

// TestJobEngineQuick runs the jobengine group as -quick does, on each engine: both job
// engines enqueue and deliver every event, byte for byte and signed (the receiver checks
// both and the group fails on a bad delivery). It reads no figure.
func TestJobEngineQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs River and the relay against real databases for seconds")
	}
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			cfg := QuickConfig()
			cfg.Dir = t.TempDir()
			if engine == "postgres" {
				cfg.Postgres = pgtest.URL(t)
			}
			r := &Runner{Cfg: cfg}
			rows, err := r.jobEngineRows(context.Background(), engine)
			if err != nil {
				t.Fatal(err)
			}
			// Enqueue, then drain and lag per setup, each for the outbox and River.
			if want := 2 * (1 + 2*len(jobSetups(cfg))); len(rows) != want {
				t.Fatalf("%d rows, want %d", len(rows), want)
			}
			for _, row := range rows {
				if !strings.Contains(row.Scenario, "("+engine+")") || row.Terragate == "" {
					t.Errorf("row %+v", row)
				}
				if strings.Contains(row.Scenario, "River") && row.Baseline == "" {
					t.Errorf("River row without the outbox's figure: %+v", row)
				}
			}
		})
	}
}
