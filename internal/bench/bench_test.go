package bench

import (
	"context"
	"flag"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/store/postgres/pgtest"
)

var (
	benchUsers    = flag.Int("users", DefaultConfig().Population.Users, "end users seeded for the connectedUsers benchmarks (3 connections each)")
	benchPG       = flag.String("postgres", "", "PostgreSQL server for the PostgreSQL benchmarks (default TEST_DATABASE_URL, else the local default; off: none)")
	benchInFlight = flag.Int("inflight", DefaultConfig().InFlight, "requests in flight in the parallel benchmarks")
)

// runner is shared by every benchmark of the binary: one build of terragate, one emulator.
var (
	runnerOnce sync.Once
	runner     *Runner
	runnerErr  error
	runnerDir  string
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if runner != nil {
		runner.Close()
	}
	if runnerDir != "" {
		_ = os.RemoveAll(runnerDir)
	}
	os.Exit(code)
}

func benchRunner(b *testing.B) *Runner {
	b.Helper()
	runnerOnce.Do(func() {
		cfg := DefaultConfig()
		cfg.Population.Users = *benchUsers
		cfg.InFlight = *benchInFlight
		cfg.Postgres = PostgresURL(*benchPG)
		runnerDir, runnerErr = os.MkdirTemp("", "terragate-bench-")
		if runnerErr != nil {
			return
		}
		cfg.Dir = runnerDir
		runner, runnerErr = NewRunner(context.Background(), cfg)
	})
	if runnerErr != nil {
		b.Fatal(runnerErr)
	}
	return runner
}

// serial runs op b.N times, one at a time, and reports the p50 and p99 of its latencies.
func serial(b *testing.B, r *Runner, op Op) {
	b.Helper()
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		i := int(r.next.Add(1) - 1)
		t0 := time.Now()
		if err := op(ctx, i); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportQuantiles(b, lat)
}

// parallel runs op from r.Cfg.InFlight goroutines and reports requests per second.
func parallel(b *testing.B, r *Runner, op Op) {
	b.Helper()
	ctx := context.Background()
	b.SetParallelism(max(1, (r.Cfg.InFlight+1)/2)) // times GOMAXPROCS, 2 here
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(ctx, int(r.next.Add(1)-1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

func reportQuantiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	s := Stats{Latencies: lat}
	b.ReportMetric(micros(s.Quantile(.5)), "p50-µs")
	b.ReportMetric(micros(s.Quantile(.99)), "p99-µs")
}

// BenchmarkCreateWidgetSession: directly at Terra and through terragate one at a time;
// through a bare reverse proxy and through terragate with many in flight.
func BenchmarkCreateWidgetSession(b *testing.B) {
	r := benchRunner(b)
	s, err := r.NewSessions(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.Run("direct", func(b *testing.B) { b.ReportAllocs(); serial(b, r, s.Direct) })
	b.Run("terragate", func(b *testing.B) { s.Prepare(b.N); serial(b, r, s.ThroughGateway) })
	// Allocations of the generator's client and the emulator included: less Direct's, the
	// gateway's own.
	b.Run("inprocess", func(b *testing.B) { s.Prepare(b.N); b.ReportAllocs(); serial(b, r, s.InProcess) })
	b.Run("reverseproxy-parallel", func(b *testing.B) { parallel(b, r, s.Proxied) })
	b.Run("terragate-parallel", func(b *testing.B) { s.Prepare(b.N); parallel(b, r, s.ThroughGateway) })
}

// BenchmarkConnectedUsers: the store alone, the /graphql handler chain in process
// (allocations; and `{ __typename }` through it, the chain's own cost), and over HTTP the
// hand-written baseline and terragate, on SQLite and on PostgreSQL when a server answers.
func BenchmarkConnectedUsers(b *testing.B) {
	r := benchRunner(b)
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			if engine == "postgres" {
				if r.Cfg.Postgres == "" {
					b.Skip("no PostgreSQL server given (-postgres)")
				}
				if err := pgtest.Ping(context.Background(), r.Cfg.Postgres); err != nil {
					b.Skipf("no PostgreSQL at the server given: %v", err)
				}
			}
			u, err := r.NewUsers(context.Background(), engine)
			if err != nil {
				b.Fatal(err)
			}
			defer u.Close()
			b.Run("store", func(b *testing.B) { b.ReportAllocs(); serial(b, r, u.Store) })
			b.Run("inprocess", func(b *testing.B) { b.ReportAllocs(); serial(b, r, u.InProcess) })
			b.Run("inprocess-typename", func(b *testing.B) { b.ReportAllocs(); serial(b, r, u.InProcessFloor) })
			b.Run("baseline-http-parallel", func(b *testing.B) { parallel(b, r, u.Baseline) })
			b.Run("terragate-http-parallel", func(b *testing.B) { parallel(b, r, u.ThroughGateway) })
		})
	}
}

// BenchmarkWebhookIngest delivers signed auth webhooks, each a new connection, many in
// flight, to a gateway on a fresh SQLite file; SQLite must never answer busy.
func BenchmarkWebhookIngest(b *testing.B) {
	r := benchRunner(b)
	gw, err := r.startGateway(context.Background(), r.sqliteURL("bench-webhooks"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer gw.Stop()
	w := &Webhooks{r: r, gw: gw}
	parallel(b, r, w.Deliver)
	if n := gw.BusyErrors(); n > 0 {
		b.Errorf("SQLite was busy %d times", n)
	}
}

// BenchmarkStartup starts terragate on an existing, seeded database until it is ready.
func BenchmarkStartup(b *testing.B) {
	r := benchRunner(b)
	url, err := r.usersSQLite(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	var ready []time.Duration
	b.ResetTimer()
	for range b.N {
		gw, err := r.startGateway(context.Background(), url, nil)
		if err != nil {
			b.Fatal(err)
		}
		ready = append(ready, gw.Ready)
		b.StopTimer()
		if err := gw.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportQuantiles(b, ready)
}

// BenchmarkLargeBodies ingests four 30 MiB chunks of one request at once, each relayed to
// two destinations, and reports how far the gateway's peak RSS rose above its resident
// memory before (issue 13: under 64 MiB) and the time to acknowledge a chunk, alone (under
// 2 s on loopback) and four at once.
func BenchmarkLargeBodies(b *testing.B) {
	r := benchRunner(b)
	engines := map[string]string{"sqlite": r.sqliteURL("bench-large")}
	if r.Cfg.Postgres != "" && pgtest.Ping(context.Background(), r.Cfg.Postgres) == nil {
		url, drop, err := pgtest.CreateSchema(r.Cfg.Postgres, "bench_")
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = drop() }()
		engines["postgres"] = url
	}
	for _, name := range []string{"sqlite", "postgres"} {
		url, ok := engines[name]
		if !ok {
			continue
		}
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			l, err := r.StartLargeBodies(ctx, url)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			before, err := l.GW.RSS()
			if err != nil {
				b.Fatal(err)
			}
			var alone, together []time.Duration
			b.ResetTimer()
			for range b.N {
				one, err := l.Ingest(ctx, 1)
				if err != nil {
					b.Fatal(err)
				}
				alone = append(alone, one...)
				if err := l.Relayed(ctx, 1); err != nil {
					b.Fatal(err)
				}
				four, err := l.Ingest(ctx, 4)
				if err != nil {
					b.Fatal(err)
				}
				together = append(together, four...)
				if err := l.Relayed(ctx, 4); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			peak, err := l.GW.PeakRSS()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(before)/(1<<20), "rss-before-MiB")
			b.ReportMetric(float64(peak-before)/(1<<20), "peak-rss-rise-MiB")
			b.ReportMetric(float64(slices.Max(alone).Milliseconds()), "ack-1x30MiB-max-ms")
			b.ReportMetric(float64(slices.Max(together).Milliseconds()), "ack-4x30MiB-max-ms")
		})
	}
}
