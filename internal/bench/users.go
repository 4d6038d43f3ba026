package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for the baseline

	"github.com/terragate/terragate/db"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/engine"
	"github.com/terragate/terragate/internal/store/postgres/pgtest"
	"github.com/terragate/terragate/internal/store/sqlite"
)

// sample is how many of the population's end users the connectedUsers scenarios ask for,
// spread evenly over it, so reads touch the whole index and not one hot page.
const sample = 4096

// listQuery asks for everything the store holds of each connection.
var listQuery = []byte(`{"query":"{ connectedUsers { userId provider referenceId active status scopes connectedAt lastWebhookUpdate updatedAt } }"}`)

// Users is the connectedUsers fixture on one engine: a seeded database, terragate in
// process (for allocations) and as a process, and the hand-written baseline beside it.
type Users struct {
	r            *Runner
	Engine       string
	URL          string // the database
	users        []string
	tokens       []string
	handler      http.Handler // in process
	closeHandler func()
	store        store.Store
	gw           *Gateway
	base         *http.Server
	baseURL      string
	drop         func() error
}

// NewUsers seeds a database on engine ("sqlite" or "postgres") with the runner's
// population and starts the fixture over it.
func (r *Runner) NewUsers(ctx context.Context, engineName string) (*Users, error) {
	u := &Users{r: r, Engine: engineName, drop: func() error { return nil }}
	p := r.Cfg.Population
	start := time.Now()
	switch engineName {
	case "sqlite":
		url, err := r.usersSQLite(ctx)
		if err != nil {
			return nil, err
		}
		u.URL = url
	case "postgres":
		url, drop, err := pgtest.CreateSchema(r.Cfg.Postgres, "bench_")
		if err != nil {
			return nil, err
		}
		u.URL, u.drop = url, drop
		if err := SeedPostgres(ctx, url, p); err != nil {
			_ = drop()
			return nil, err
		}
	default:
		return nil, fmt.Errorf("no engine %q", engineName)
	}
	r.progress("%d end users with %d connections on %s in %v", p.Users, p.Users*p.PerUser, engineName, time.Since(start).Round(time.Millisecond))
	n := min(sample, p.Users)
	for i := range n {
		u.users = append(u.users, User(i*p.Users/n))
	}
	var err error
	if u.tokens, err = Tokens(u.users); err != nil {
		return nil, err
	}
	if err := u.start(ctx); err != nil {
		u.Close()
		return nil, err
	}
	return u, nil
}

// usersSQLite is the SQLite file of the connectedUsers population, seeded on first use.
func (r *Runner) usersSQLite(ctx context.Context) (string, error) {
	url := r.sqliteURL("users")
	path := strings.TrimPrefix(url, "sqlite:")
	if _, err := os.Stat(path); err == nil {
		return url, nil
	}
	return url, SeedSQLite(ctx, path, r.Cfg.Population)
}

func (u *Users) start(ctx context.Context) error {
	var err error
	u.store, err = engine.Open(ctx, u.URL, engine.Options{Migrate: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	if u.handler, u.closeHandler, err = GraphQLHandler(ctx, u.URL, u.r.Emu.URL); err != nil {
		return err
	}
	if u.gw, err = u.r.startGateway(ctx, u.URL, nil); err != nil {
		return err
	}
	base, err := newBaseline(u.Engine, u.URL)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	u.base = &http.Server{Handler: base, ReadHeaderTimeout: 10 * time.Second}
	u.baseURL = "http://" + ln.Addr().String()
	go func() { _ = u.base.Serve(ln) }()
	return nil
}

// Close stops everything and drops a PostgreSQL schema.
func (u *Users) Close() {
	if u.base != nil {
		_ = u.base.Close()
	}
	if u.gw != nil {
		_ = u.gw.Stop()
	}
	if u.closeHandler != nil {
		u.closeHandler()
	}
	if u.store != nil {
		_ = u.store.Close()
	}
	_ = u.drop()
}

// Gateway is the fixture's terragate process.
func (u *Users) Gateway() *Gateway { return u.gw }

// Store asks the store alone: the floor under everything terragate adds.
func (u *Users) Store(ctx context.Context, i int) error {
	list, err := u.store.ListTerraUsers(ctx, u.users[i%len(u.users)], false)
	if err == nil && len(list) == 0 {
		err = fmt.Errorf("no connections for %s", u.users[i%len(u.users)])
	}
	return err
}

// InProcess serves one connectedUsers request with the in-process handler chain.
func (u *Users) InProcess(ctx context.Context, i int) error {
	return u.inProcess(ctx, i, listQuery)
}

// typenameQuery asks GraphQL for nothing: what it costs is the handler chain's own.
var typenameQuery = []byte(`{"query":"{ __typename }"}`)

// InProcessFloor serves `{ __typename }` with the same chain and the same authentication:
// everything of a connectedUsers request but the store call and the rows.
func (u *Users) InProcessFloor(ctx context.Context, i int) error {
	return u.inProcess(ctx, i, typenameQuery)
}

func (u *Users) inProcess(ctx context.Context, i int, body []byte) error {
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+u.tokens[i%len(u.tokens)])
	rec := httptest.NewRecorder()
	u.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), `"errors"`) {
		return fmt.Errorf("in-process GraphQL answered %d %.300s", rec.Code, rec.Body.String())
	}
	return nil
}

// ThroughGateway asks terragate over HTTP.
func (u *Users) ThroughGateway(ctx context.Context, i int) error {
	return postGraphQL(ctx, u.r.client, u.gw.URL, u.tokens[i%len(u.tokens)], listQuery, "connectedUsers")
}

// Baseline asks the hand-written handler over HTTP.
func (u *Users) Baseline(ctx context.Context, i int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.baseURL+"/users?reference_id="+u.users[i%len(u.users)], nil)
	if err != nil {
		return err
	}
	resp, err := u.r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var rows []map[string]any
	if err := check(resp, http.StatusOK); err != nil {
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(&rows); err != nil || len(rows) == 0 {
		return fmt.Errorf("baseline answered no rows: %v", err)
	}
	return nil
}

// newBaseline is the limit terragate's connectedUsers is held against: a minimal
// net/http handler over database/sql that runs the store's own query for a reference_id
// taken from the URL (no authentication, no GraphQL) and writes the rows as JSON.
func newBaseline(engineName, databaseURL string) (http.Handler, error) {
	query, err := db.Query(engineName, "ListActiveTerraUsers")
	if err != nil {
		return nil, err
	}
	var conn *sql.DB
	switch engineName {
	case "sqlite":
		query = strings.Replace(query, "@reference_id", "?", 1)
		conn, err = sql.Open("sqlite", sqlite.DSN(strings.TrimPrefix(databaseURL, "sqlite:"), true))
	case "postgres":
		query = strings.Replace(query, "@reference_id", "$1", 1)
		conn, err = sql.Open("pgx", databaseURL)
	}
	if err != nil {
		return nil, err
	}
	conn.SetMaxOpenConns(10)
	conn.SetMaxIdleConns(10)
	stmt, err := conn.Prepare(query)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rows, err := stmt.QueryContext(r.Context(), r.URL.Query().Get("reference_id"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		var out []map[string]any
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			row := make(map[string]any, len(cols))
			for i, c := range cols {
				row[c] = vals[i]
			}
			out = append(out, row)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}), nil
}

// UserRows measures connectedUsers on SQLite and, when a server answers, on PostgreSQL.
func (r *Runner) UserRows(ctx context.Context) ([]Row, error) {
	rows, err := r.userRows(ctx, "sqlite")
	if err != nil {
		return nil, err
	}
	if r.Cfg.Postgres == "" {
		r.progress("PostgreSQL figures left out: no server given")
		return rows, nil
	}
	if err := pgtest.Ping(ctx, r.Cfg.Postgres); err != nil {
		r.progress("PostgreSQL figures left out: %v", err)
		return rows, nil
	}
	pg, err := r.userRows(ctx, "postgres")
	return append(rows, pg...), err
}

func (r *Runner) userRows(ctx context.Context, engineName string) ([]Row, error) {
	u, err := r.NewUsers(ctx, engineName)
	if err != nil {
		return nil, err
	}
	defer u.Close()
	c := r.Cfg
	label := fmt.Sprintf("connectedUsers (%s, %dk users, %dk connections)", engineName, c.Population.Users/1000, c.Population.Users*c.Population.PerUser/1000)

	var floor, inproc, allocs, sizes, ratios, chain, chainAllocs []float64
	for round := range c.Rounds {
		r.progress("%s in process, round %d", label, round+1)
		fs, err := measure(ctx, &r.next, u.Store)
		if err != nil {
			return nil, err
		}
		hs, err := measure(ctx, &r.next, u.InProcess)
		if err != nil {
			return nil, err
		}
		cs, err := measure(ctx, &r.next, u.InProcessFloor)
		if err != nil {
			return nil, err
		}
		floor, inproc = append(floor, float64(fs.NsPerOp())/1000), append(inproc, float64(hs.NsPerOp())/1000)
		allocs, sizes = append(allocs, float64(hs.AllocsPerOp())), append(sizes, float64(hs.AllocedBytesPerOp()))
		chain, chainAllocs = append(chain, float64(cs.NsPerOp())/1000), append(chainAllocs, float64(cs.AllocsPerOp()))
		ratios = append(ratios, inproc[round]/floor[round])
	}
	perQuery := median(inproc)
	allocsPerOp := median(allocs)
	rows := []Row{{
		Scenario: label + ", in process",
		Baseline: fmtMicros(median(floor)) + " (store alone)", Terragate: fmtMicros(perQuery), Ratio: fmtRatio(median(ratios)),
		Allocs: fmt.Sprintf("%.0f", allocsPerOp), Memory: fmtBytes(median(sizes)) + "/op",
		Spread: spread(inproc, fmtMicros), Target: "≤ 25 µs, ≤ 300 allocs", Met: perQuery <= 25 && allocsPerOp <= 300,
	}, {
		// No target: it shows how much of the above is the chain itself, rows aside.
		Scenario:  label + ", in process: `{ __typename }` through the same chain",
		Terragate: fmtMicros(median(chain)), Allocs: fmt.Sprintf("%.0f", median(chainAllocs)),
		Spread: spread(chain, fmtMicros),
	}}

	var bt, tt, tputRatios, b50, b99, t50, t99, bl99, tl99 []float64
	for round := range c.Rounds {
		r.progress("%s over HTTP at %d in flight, round %d", label, c.InFlight, round+1)
		base := Closed(ctx, c.InFlight, c.WarmUp, c.Duration, &r.next, u.Baseline)
		gw := Closed(ctx, c.InFlight, c.WarmUp, c.Duration, &r.next, u.ThroughGateway)
		if err := firstError(base, gw); err != nil {
			return nil, err
		}
		bt, tt = append(bt, base.PerSecond()), append(tt, gw.PerSecond())
		tputRatios = append(tputRatios, gw.PerSecond()/base.PerSecond())
		// Percentiles under an open model, at half of what terragate served closed: a
		// healthy deployment's load, where queueing still shows in the tail.
		rate := 0.5 * gw.PerSecond()
		r.progress("%s, open model at %.0f/s, round %d", label, rate, round+1)
		bo := Open(ctx, rate, 4*c.InFlight, c.WarmUp, c.Duration, &r.next, u.Baseline)
		to := Open(ctx, rate, 4*c.InFlight, c.WarmUp, c.Duration, &r.next, u.ThroughGateway)
		if err := firstError(bo, to); err != nil {
			return nil, err
		}
		b50, b99 = append(b50, micros(bo.Quantile(.5))), append(b99, micros(bo.Quantile(.99)))
		t50, t99 = append(t50, micros(to.Quantile(.5))), append(t99, micros(to.Quantile(.99)))
		bl99, tl99 = append(bl99, micros(bo.LateQuantile(.99))), append(tl99, micros(to.LateQuantile(.99)))
	}
	ratio, p99 := median(tputRatios), median(t99)
	rows = append(rows,
		Row{
			Scenario: fmt.Sprintf("%s, HTTP, %d in flight", label, c.InFlight),
			Baseline: fmtRate(median(bt)) + " (net/http + database/sql)", Terragate: fmtRate(median(tt)), Ratio: fmtRatio(ratio),
			Spread: spread(tputRatios, fmtRatio), Target: "≥ 0.50x", Met: ratio >= 0.5,
		},
		Row{
			Scenario:  label + ", HTTP, open model at 50% of that",
			Baseline:  "p50 " + latency(median(b50)) + ", p99 " + latency(median(b99)) + sentLate(median(bl99)),
			Terragate: "p50 " + latency(median(t50)) + ", p99 " + latency(p99) + sentLate(median(tl99)),
			P50:       latency(median(t50)), P99: latency(p99),
			Spread: spread(t99, latency), Target: "p99 < 5 ms", Met: p99 < 5000,
		})
	return rows, nil
}

// measure runs op as a Go benchmark (allocations counted) for the benchmark time
// (-test.benchtime: under `go test` its flag, in the load command its -duration), and
// fails on the first error.
func measure(ctx context.Context, next *atomic.Int64, op Op) (testing.BenchmarkResult, error) {
	var failed error
	res := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		i := int(next.Add(int64(b.N)) - int64(b.N))
		b.ResetTimer()
		for n := range b.N {
			if err := op(ctx, i+n); err != nil {
				failed = err
				b.FailNow()
			}
		}
	})
	return res, failed
}

// PostgresURL is the server the PostgreSQL figures use: flag, else TEST_DATABASE_URL,
// else the local default; "off" means none.
func PostgresURL(flag string) string {
	switch {
	case flag == "off":
		return ""
	case flag != "":
		return flag
	case os.Getenv("TEST_DATABASE_URL") != "":
		return os.Getenv("TEST_DATABASE_URL")
	}
	return pgtest.DefaultURL
}
