package bench

import (
	"bytes"
	"context"
	"crypto/hmac"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/terragate/terragate/internal/relay"
	"github.com/terragate/terragate/internal/stdwebhook"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/postgres"
	"github.com/terragate/terragate/internal/store/postgres/pgtest"
	"github.com/terragate/terragate/internal/store/sqlite"
)

// The jobengine group measures the two job engines issue 13 names for relaying every
// stored Terra event to the app's backends, on one harness and both database engines:
// the store's transactional outbox with internal/relay (what terragate ships) and River
// (riverqueue). Both run in this process, without a gateway in front, over a fresh
// database each, and deliver the same 2 KB body, signed the Standard Webhooks way, to a
// receiver on loopback.
//
// River on SQLite gets a file of its own, which holds its tables and the inbox table its
// transactions write to. The store keeps one writer connection on its file, and River's
// pool (one connection, as its SQLite driver asks) would be a second writer there, which
// SQLite answers with SQLITE_BUSY; in production River would have to be handed the
// store's one writer connection, and its fetches, completions and maintenance would queue
// with the webhook writes on it.

const (
	// jobEventBytes is the size of each event: issue 13's 2 KB data event.
	jobEventBytes = 2 << 10
	// jobLagRate is the enqueue rate at which lag is measured (issue 13: 500 events/s).
	jobLagRate = 500
	// jobWorkers is the attempts in flight per destination: the relay's default
	// concurrency, and River's MaxWorkers set to match. jobWorkersHigh is the second try:
	// the MaxWorkers of River's own examples.
	jobWorkers, jobWorkersHigh = relay.DefaultConcurrency, 100
	// jobPoolConns caps each PostgreSQL pool, the store's and River's: terragate's default
	// DB_MAX_CONNS.
	jobPoolConns = 10
	// jobTunedPoll is the tuned runs' poll interval (the outbox relay's Poll, River's
	// FetchPollInterval), and jobTunedCooldown River's FetchCooldown in them, which also
	// spaces its insert notifications.
	jobTunedPoll, jobTunedCooldown = 10 * time.Millisecond, 5 * time.Millisecond
	// jobDestination names the one destination every event goes to.
	jobDestination = "bench"
	// jobTracePrefix starts each event's trace id; the event's number follows.
	jobTracePrefix = "jobengine-"
)

// jobKind is a job engine: the outbox or River.
type jobKind string

const (
	kindOutbox jobKind = "outbox"
	kindRiver  jobKind = "River"
)

var jobKinds = []jobKind{kindOutbox, kindRiver}

// jobQuick reports whether c is a run shorter than a second (-quick): one setup per
// scenario and a small backlog, enough to check that every part works.
func jobQuick(c Config) bool { return c.Duration < time.Second }

// jobBacklog is the drain scenario's pre-enqueued events: 5,000 in a full run (five
// seconds at the 1,000/s target), a few in a quick one.
func jobBacklog(c Config) int {
	if jobQuick(c) {
		return 20
	}
	return 5000
}

// jobSetups are the ways the drain and lag scenarios run each engine: as the relay ships
// (4 attempts in flight, its 250 ms poll; River given the same concurrency and its own
// fetch defaults), with a tuned poll, and both again with 100 attempts in flight.
func jobSetups(c Config) []jobSetup {
	all := []jobSetup{{workers: jobWorkers}, {workers: jobWorkers, tuned: true}, {workers: jobWorkersHigh}, {workers: jobWorkersHigh, tuned: true}}
	if jobQuick(c) {
		// The quickest, and the one whose settings River checks most.
		return []jobSetup{{workers: jobWorkersHigh, tuned: true}}
	}
	return all
}

// jobSetup is how one job engine instance delivers.
type jobSetup struct {
	url     string // the receiver
	workers int    // attempts in flight: the relay's Concurrency, River's MaxWorkers
	tuned   bool   // poll every jobTunedPoll instead of at the engine's defaults
}

// String names the setup in a scenario.
func (s jobSetup) String() string {
	poll := "default poll"
	if s.tuned {
		poll = "tuned poll"
	}
	return fmt.Sprintf("%d workers, %s", s.workers, poll)
}

// settings describes s for kind as the report shows it.
func (s jobSetup) settings(kind jobKind) string {
	if kind == kindOutbox {
		poll := relay.DefaultPoll
		if s.tuned {
			poll = jobTunedPoll
		}
		return fmt.Sprintf("Concurrency %d, Poll %s", s.workers, poll)
	}
	cooldown, poll := river.FetchCooldownDefault, river.FetchPollIntervalDefault
	if s.tuned {
		cooldown, poll = jobTunedCooldown, jobTunedPoll
	}
	return fmt.Sprintf("MaxWorkers %d, FetchCooldown %s, FetchPollInterval %s", s.workers, cooldown, poll)
}

// jobEngine is one job engine over a fresh database.
type jobEngine interface {
	// enqueue records event i on an inbox row and enqueues it for the destination, in one
	// transaction.
	enqueue(ctx context.Context, i int) error
	// start starts delivering.
	start(ctx context.Context) error
	// close stops delivering (waiting for the attempts in flight) and drops the database.
	close() error
}

func jobTrace(i int) string { return jobTracePrefix + strconv.Itoa(i) }

// jobDB is a fresh database for one engine instance: a new SQLite file in the run's
// directory, or a new PostgreSQL schema.
type jobDB struct {
	engine string
	path   string // SQLite
	url    string // PostgreSQL, with the schema as its search_path
	schema string
	drop   func() error
}

func (r *Runner) newJobDB(engine string) (jobDB, error) {
	if engine == "sqlite" {
		f, err := os.CreateTemp(r.Cfg.Dir, "jobengine-*.db")
		if err != nil {
			return jobDB{}, err
		}
		path := f.Name()
		_ = f.Close()
		return jobDB{engine: engine, path: path, drop: func() error {
			return errors.Join(os.Remove(path), ignoreMissing(os.Remove(path+"-wal")), ignoreMissing(os.Remove(path+"-shm")))
		}}, nil
	}
	u, drop, err := pgtest.CreateSchema(r.Cfg.Postgres, "bench_")
	if err != nil {
		return jobDB{}, err
	}
	return jobDB{engine: engine, url: u, schema: searchPath(u), drop: drop}, nil
}

func ignoreMissing(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// searchPath is the schema a pgtest URL sets as search_path.
func searchPath(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return ""
	}
	_, schema, _ := strings.Cut(u.Query().Get("options"), "search_path=")
	return strings.TrimSpace(schema)
}

// jobHTTPClient is both engines' client: it keeps a connection per attempt in flight
// (the default keeps two per host), so that neither pays for new connections.
func jobHTTPClient() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: relay.NoRedirects,
		Transport:     &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute},
	}
}

// openJobEngine opens kind over a fresh database of engine, delivering as s says.
func (r *Runner) openJobEngine(ctx context.Context, engine string, kind jobKind, s jobSetup, log *slog.Logger) (jobEngine, error) {
	db, err := r.newJobDB(engine)
	if err != nil {
		return nil, err
	}
	secret, err := stdwebhook.ParseSecret(relaySecret)
	if err != nil {
		return nil, err
	}
	body := LargeActivity(jobEventBytes)
	var e jobEngine
	switch {
	case kind == kindOutbox:
		e, err = openOutbox(ctx, db, s, secret, body, log)
	case engine == "sqlite":
		e, err = openRiverSQLite(ctx, db, s, secret, body, log)
	default:
		e, err = openRiverPostgres(ctx, db, s, secret, body, log)
	}
	if err != nil {
		return nil, errors.Join(err, db.drop())
	}
	return e, nil
}

// outboxEngine is the store's outbox, delivered by internal/relay.
type outboxEngine struct {
	st    store.Store
	relay *relay.Relay
	body  []byte
	drop  func() error
	stop  func()
}

func openOutbox(ctx context.Context, db jobDB, s jobSetup, secret stdwebhook.Secret, body []byte, log *slog.Logger) (*outboxEngine, error) {
	var st store.Store
	var err error
	if db.engine == "sqlite" {
		st, err = sqlite.Open(ctx, db.path, log)
	} else {
		st, err = postgres.Open(ctx, db.url, postgres.Options{MaxConns: jobPoolConns, Migrate: true}, log)
	}
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(s.url)
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	poll := time.Duration(0) // relay.DefaultPoll
	if s.tuned {
		poll = jobTunedPoll
	}
	rl := relay.New(relay.Config{
		Destinations: []relay.Destination{{Name: jobDestination, URL: u, Secret: secret}},
		Timeout:      10 * time.Second,
		Schedule:     []time.Duration{time.Second},
		Retention:    time.Hour,
		Concurrency:  s.workers,
		Poll:         poll,
	}, st, jobHTTPClient(), nil, log)
	return &outboxEngine{st: st, relay: rl, body: body, drop: db.drop}, nil
}

// enqueue stores a data event as the webhook handler does: an inbox row that keeps no
// body, and the event for the relay, which is then told of it.
func (e *outboxEngine) enqueue(ctx context.Context, i int) error {
	key, now := jobTrace(i), time.Now()
	dests := []string{jobDestination}
	_, err := e.st.ApplyWebhook(ctx, store.Delivery{
		DedupeKey: "trace:" + key, TraceID: key, Source: store.SourceWebhook, SignedAt: now, ReceivedAt: now,
		Event: store.Event{Kind: store.EventIgnored, Type: "activity"},
		Relay: &store.RelayEvent{Type: "activity", TraceID: key, Body: e.body, Destinations: dests},
	})
	if err == nil {
		e.relay.Enqueued(dests)
	}
	return err
}

func (e *outboxEngine) start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.relay.Run(ctx)
	}()
	e.stop = func() { cancel(); <-done }
	return nil
}

func (e *outboxEngine) close() error {
	if e.stop != nil {
		e.stop()
	}
	return errors.Join(e.st.Close(), e.drop())
}

// relayJob is River's job: one event for the destination. Body is []byte, which JSON
// carries as base64: River keeps args as jsonb on PostgreSQL, which would not keep
// Terra's bytes as sent (key order, spaces), and the signature is over those bytes.
type relayJob struct {
	TraceID string `json:"trace_id"`
	Body    []byte `json:"body"`
}

// Kind names the job for River.
func (relayJob) Kind() string { return "relay" }

// relayWorker posts River's relay jobs.
type relayWorker struct {
	river.WorkerDefaults[relayJob]
	post *jobPoster
}

// Work posts the job's body; an error makes River retry it.
func (w *relayWorker) Work(ctx context.Context, job *river.Job[relayJob]) error {
	return w.post.send(ctx, "msg_"+strconv.FormatInt(job.ID, 10), job.Args.TraceID, job.Args.Body)
}

// jobPoster sends River's deliveries as the relay sends its own: signed with
// internal/stdwebhook, with Terra's trace id.
type jobPoster struct {
	client *http.Client
	url    string
	secret stdwebhook.Secret
}

func (p *jobPoster) send(ctx context.Context, id, trace string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "terragate-relay")
	req.Header.Set("terragate-event-type", "activity")
	req.Header.Set("x-terra-trace-id", trace)
	p.secret.SetHeaders(req.Header, id, time.Now(), body)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// riverEngine is River over one of its drivers. Its client both inserts and works, as
// one in terragate would.
type riverEngine[TTx any] struct {
	client *river.Client[TTx]
	// inTx runs fn in a transaction on River's own pool.
	inTx func(ctx context.Context, fn func(TTx) error) error
	// inbox inserts event key's inbox row in tx.
	inbox   func(ctx context.Context, tx TTx, key string, now time.Time) error
	body    []byte
	release func() error // closes the pool and drops the database
	started bool
}

// riverConfig is the River client configuration of s: one queue with s.workers workers
// and, unless tuned, River's fetch defaults.
func riverConfig(s jobSetup, secret stdwebhook.Secret, schema string, log *slog.Logger) *river.Config {
	workers := river.NewWorkers()
	river.AddWorker(workers, &relayWorker{post: &jobPoster{client: jobHTTPClient(), url: s.url, secret: secret}})
	c := &river.Config{
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: s.workers}},
		Workers: workers,
		Logger:  log,
		Schema:  schema,
	}
	if s.tuned {
		c.FetchCooldown, c.FetchPollInterval = jobTunedCooldown, jobTunedPoll
	}
	return c
}

func migrateRiver[TTx any](ctx context.Context, d riverdriver.Driver[TTx], schema string, log *slog.Logger) error {
	m, err := rivermigrate.New(d, &rivermigrate.Config{Schema: schema, Logger: log})
	if err != nil {
		return err
	}
	_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	return err
}

// The inbox table River's transactions write to: the columns of the store's
// webhook_events that a data event fills (its body is kept by the job, not the row).
const (
	sqliteInboxTable = `CREATE TABLE bench_inbox (
	id INTEGER PRIMARY KEY,
	dedupe_key TEXT NOT NULL UNIQUE,
	source TEXT NOT NULL,
	trace_id TEXT NOT NULL,
	type TEXT NOT NULL,
	kind TEXT NOT NULL,
	signed_at TEXT NOT NULL,
	received_at TEXT NOT NULL,
	body BLOB NOT NULL,
	applied_at TEXT,
	outcome TEXT
)`
	sqliteInboxInsert = `INSERT INTO bench_inbox (dedupe_key, source, trace_id, type, kind, signed_at, received_at, body, applied_at, outcome)
VALUES (?, 'webhook', ?, 'activity', 'ignored', ?, ?, x'', ?, 'ignored')`
	pgInboxTable = `CREATE TABLE bench_inbox (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	dedupe_key text NOT NULL UNIQUE,
	source text NOT NULL,
	trace_id text NOT NULL,
	type text NOT NULL,
	kind text NOT NULL,
	signed_at timestamptz NOT NULL,
	received_at timestamptz NOT NULL,
	body bytea NOT NULL,
	applied_at timestamptz,
	outcome text
)`
	pgInboxInsert = `INSERT INTO bench_inbox (dedupe_key, source, trace_id, type, kind, signed_at, received_at, body, applied_at, outcome)
VALUES ($1, 'webhook', $2, 'activity', 'ignored', $3, $3, ''::bytea, $3, 'ignored')`
)

// openRiverSQLite opens River's SQLite driver on a file of its own with one connection,
// as the driver asks, and the store's DSN (WAL, busy timeout, immediate transactions).
func openRiverSQLite(ctx context.Context, db jobDB, s jobSetup, secret stdwebhook.Secret, body []byte, log *slog.Logger) (*riverEngine[*sql.Tx], error) {
	conn, err := sql.Open("sqlite", sqlite.DSN(db.path, false))
	if err != nil {
		return nil, err
	}
	conn.SetMaxOpenConns(1)
	fail := func(err error) (*riverEngine[*sql.Tx], error) { return nil, errors.Join(err, conn.Close()) }
	driver := riversqlite.New(conn)
	if err := migrateRiver(ctx, driver, "", log); err != nil {
		return fail(fmt.Errorf("river migrate: %w", err))
	}
	if _, err := conn.ExecContext(ctx, sqliteInboxTable); err != nil {
		return fail(err)
	}
	client, err := river.NewClient(driver, riverConfig(s, secret, "", log))
	if err != nil {
		return fail(err)
	}
	return &riverEngine[*sql.Tx]{
		client: client,
		body:   body,
		inTx: func(ctx context.Context, fn func(*sql.Tx) error) error {
			tx, err := conn.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if err := fn(tx); err != nil {
				return errors.Join(err, tx.Rollback())
			}
			return tx.Commit()
		},
		inbox: func(ctx context.Context, tx *sql.Tx, key string, now time.Time) error {
			_, err := tx.ExecContext(ctx, sqliteInboxInsert, "trace:"+key, key, now, now, now)
			return err
		},
		release: func() error { return errors.Join(conn.Close(), db.drop()) },
	}, nil
}

// openRiverPostgres opens River's pgx driver on a pool of its own in the fresh schema.
func openRiverPostgres(ctx context.Context, db jobDB, s jobSetup, secret stdwebhook.Secret, body []byte, log *slog.Logger) (*riverEngine[pgx.Tx], error) {
	cfg, err := pgxpool.ParseConfig(db.url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = jobPoolConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*riverEngine[pgx.Tx], error) { pool.Close(); return nil, err }
	driver := riverpgxv5.New(pool)
	if err := migrateRiver(ctx, driver, db.schema, log); err != nil {
		return fail(fmt.Errorf("river migrate: %w", err))
	}
	if _, err := pool.Exec(ctx, pgInboxTable); err != nil {
		return fail(err)
	}
	client, err := river.NewClient(driver, riverConfig(s, secret, db.schema, log))
	if err != nil {
		return fail(err)
	}
	return &riverEngine[pgx.Tx]{
		client: client,
		body:   body,
		inTx: func(ctx context.Context, fn func(pgx.Tx) error) error {
			return pgx.BeginFunc(ctx, pool, fn)
		},
		inbox: func(ctx context.Context, tx pgx.Tx, key string, now time.Time) error {
			_, err := tx.Exec(ctx, pgInboxInsert, "trace:"+key, key, now)
			return err
		},
		release: func() error { pool.Close(); return db.drop() },
	}, nil
}

// enqueue inserts the inbox row and the job in one transaction (InsertTx).
func (e *riverEngine[TTx]) enqueue(ctx context.Context, i int) error {
	key := jobTrace(i)
	return e.inTx(ctx, func(tx TTx) error {
		if err := e.inbox(ctx, tx, key, time.Now()); err != nil {
			return err
		}
		_, err := e.client.InsertTx(ctx, tx, relayJob{TraceID: key, Body: e.body}, nil)
		return err
	})
}

func (e *riverEngine[TTx]) start(ctx context.Context) error {
	if err := e.client.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	e.started = true
	return nil
}

func (e *riverEngine[TTx]) close() error {
	var err error
	if e.started {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = e.client.Stop(ctx)
		cancel()
	}
	return errors.Join(err, e.release())
}

// jobReceiver is the destination: a server on loopback that checks each delivery's body
// and Standard Webhooks signature, answers 204, and notes when each event first arrived.
type jobReceiver struct {
	URL    string
	srv    *http.Server
	secret stdwebhook.Secret
	body   []byte

	mu          sync.Mutex
	arrived     map[int]time.Time
	first, last time.Time
	bad         int // deliveries with another body, a wrong signature or no event number
	repeats     int // events delivered more than once
	want        int
	done        chan struct{} // closed once want events have arrived
}

func startJobReceiver(body []byte) (*jobReceiver, error) {
	secret, err := stdwebhook.ParseSecret(relaySecret)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rc := &jobReceiver{URL: "http://" + ln.Addr().String(), secret: secret, body: body, arrived: map[int]time.Time{}}
	rc.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(rc.serve)}
	go func() { _ = rc.srv.Serve(ln) }()
	return rc, nil
}

func (rc *jobReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	at := time.Now()
	h := r.Header
	ts, _ := strconv.ParseInt(h.Get(stdwebhook.HeaderTimestamp), 10, 64)
	sig := rc.secret.Sign(h.Get(stdwebhook.HeaderID), time.Unix(ts, 0), body)
	n, nerr := strconv.Atoi(strings.TrimPrefix(h.Get("x-terra-trace-id"), jobTracePrefix))
	ok := err == nil && nerr == nil && bytes.Equal(body, rc.body) && hmac.Equal([]byte(sig), []byte(h.Get(stdwebhook.HeaderSignature)))
	rc.mu.Lock()
	switch _, seen := rc.arrived[n]; {
	case !ok:
		rc.bad++
	case seen:
		rc.repeats++
	default:
		rc.arrived[n] = at
		if rc.first.IsZero() {
			rc.first = at
		}
		rc.last = at
		if len(rc.arrived) == rc.want && rc.done != nil {
			close(rc.done)
			rc.done = nil
		}
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// wait waits until n events have arrived, or for timeout, and reports whether they did.
func (rc *jobReceiver) wait(ctx context.Context, n int, timeout time.Duration) bool {
	rc.mu.Lock()
	if len(rc.arrived) >= n {
		rc.mu.Unlock()
		return true
	}
	done := make(chan struct{})
	rc.want, rc.done = n, done
	rc.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// arrival is when event i first arrived.
func (rc *jobReceiver) arrival(i int) (time.Time, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	at, ok := rc.arrived[i]
	return at, ok
}

// counts is the receiver's tally: events arrived, when the first and last did, and the
// bad and repeated deliveries.
func (rc *jobReceiver) counts() (n int, first, last time.Time, bad, repeats int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.arrived), rc.first, rc.last, rc.bad, rc.repeats
}

func (rc *jobReceiver) close() { _ = rc.srv.Close() }

// warnCount is a slog.Handler that counts the records at Warn and above and keeps the
// first: River and the relay report trouble (SQLITE_BUSY, failed claims) only in logs.
type warnCount struct {
	mu    sync.Mutex
	n     int
	first string
}

func (w *warnCount) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (w *warnCount) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	if w.first == "" {
		w.first = r.Message
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" || a.Key == "error" {
				w.first += ": " + a.Value.String()
			}
			return true
		})
	}
	return nil
}

func (w *warnCount) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCount) WithGroup(string) slog.Handler      { return w }

// String is the tally for the report ("" without any).
func (w *warnCount) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == 0 {
		return ""
	}
	first := w.first
	if len(first) > 120 {
		first = first[:120] + "…"
	}
	return fmt.Sprintf("%d log warnings (first: %s)", w.n, first)
}

// JobEngineRows measures the outbox and River side by side on SQLite and, when a server
// answers, on PostgreSQL: enqueue capacity (an inbox row and the job in one transaction,
// Cfg.InFlight in flight), drain rate (a backlog delivered to a local receiver) and
// Terra-to-backend lag at 500 events/s.
func (r *Runner) JobEngineRows(ctx context.Context) ([]Row, error) {
	rows, err := r.jobEngineRows(ctx, "sqlite")
	if err != nil || r.Cfg.Postgres == "" || pgtest.Ping(ctx, r.Cfg.Postgres) != nil {
		return rows, err
	}
	pg, err := r.jobEngineRows(ctx, "postgres")
	return append(rows, pg...), err
}

func (r *Runner) jobEngineRows(ctx context.Context, engine string) ([]Row, error) {
	var rows []Row
	add := func(rs []Row, err error) error {
		rows = append(rows, rs...)
		return err
	}
	if err := add(r.jobEnqueueRows(ctx, engine)); err != nil {
		return rows, err
	}
	for _, s := range jobSetups(r.Cfg) {
		if err := add(r.jobDrainRows(ctx, engine, s)); err != nil {
			return rows, err
		}
	}
	for _, s := range jobSetups(r.Cfg) {
		if err := add(r.jobLagRows(ctx, engine, s)); err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// vsOutbox fills a River row's baseline and ratio from the outbox's figure of the same
// scenario (rows[0]).
func vsOutbox(rows []Row, figures []float64, f func(float64) string) {
	if len(rows) == 2 && figures[0] > 0 {
		rows[1].Baseline = "outbox " + f(figures[0])
		rows[1].Ratio = fmtRatio(figures[1] / figures[0])
	}
}

func jobNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}

// byRound is a note of one count per round ("" unless show): "label by round: a, b, c".
func byRound(show bool, label string, counts []string) string {
	if !show {
		return ""
	}
	return label + ", by round: " + strings.Join(counts, ", ")
}

func failures(s Stats) string {
	if s.Errors == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d failed (first: %v)", s.Errors, s.Requests, s.FirstError)
}

// jobEnqueueRows measures each engine's enqueue at Cfg.InFlight in flight (closed
// model), its workers stopped.
func (r *Runner) jobEnqueueRows(ctx context.Context, engine string) ([]Row, error) {
	c := r.Cfg
	var rows []Row
	var rates []float64
	for _, kind := range jobKinds {
		var rate, p50, p99 []float64
		var notes []string
		for round := range c.Rounds {
			r.progress("jobengine enqueue (%s, %s) at %d in flight, round %d", engine, kind, c.InFlight, round+1)
			warn := &warnCount{}
			e, err := r.openJobEngine(ctx, engine, kind, jobSetup{url: "http://127.0.0.1:9", workers: jobWorkers}, slog.New(warn))
			if err != nil {
				return rows, fmt.Errorf("%s: %w", kind, err)
			}
			s := Closed(ctx, c.InFlight, c.WarmUp, c.Duration, &r.next, e.enqueue)
			if err := e.close(); err != nil {
				return rows, fmt.Errorf("%s: %w", kind, err)
			}
			if s.Requests == s.Errors {
				return rows, fmt.Errorf("%s enqueue: nothing enqueued: %v", kind, s.FirstError)
			}
			rate = append(rate, s.PerSecond())
			p50, p99 = append(p50, micros(s.Quantile(.5))), append(p99, micros(s.Quantile(.99)))
			notes = append(notes, failures(s), warn.String())
		}
		rt, tail := median(rate), median(p99)
		rates = append(rates, rt)
		rows = append(rows, Row{
			Scenario:  fmt.Sprintf("jobengine enqueue (%s), %s", engine, kind),
			Terragate: fmt.Sprintf("%s at %d in flight", fmtRate(rt), c.InFlight),
			P50:       latency(median(p50)), P99: latency(tail), Spread: spread(rate, fmtRate),
			Memory: jobNotes(notes...),
			Target: "≥ 2000/s, p99 < 50 ms", Met: rt >= 2000 && tail < 50_000 && jobNotes(notes...) == "",
		})
	}
	vsOutbox(rows, rates, fmtRate)
	return rows, nil
}

// enqueueAll enqueues n events from inFlight goroutines.
func (r *Runner) enqueueAll(ctx context.Context, e jobEngine, n, inFlight int) error {
	var left atomic.Int64
	left.Store(int64(n))
	errs := make([]error, inFlight)
	var wg sync.WaitGroup
	for w := range inFlight {
		wg.Go(func() {
			for left.Add(-1) >= 0 && ctx.Err() == nil {
				if err := e.enqueue(ctx, int(r.next.Add(1)-1)); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}

// jobDrainRows measures how fast each engine delivers a backlog with workers attempts in
// flight: the rate between the first arrival and the last, so that the engines' start-up
// (shown apart) does not count.
func (r *Runner) jobDrainRows(ctx context.Context, engine string, setup jobSetup) ([]Row, error) {
	c := r.Cfg
	n := jobBacklog(c)
	// A slow engine's rate shows well before the backlog is gone.
	limit := 20 * time.Second
	body := LargeActivity(jobEventBytes)
	var rows []Row
	var rates []float64
	for _, kind := range jobKinds {
		var rate, firstAfter []float64
		var notes, delivered []string
		partial := false
		for round := range c.Rounds {
			r.progress("jobengine drain (%s, %s) of %d events, %s, round %d", engine, kind, n, setup.settings(kind), round+1)
			rc, e, warn, err := r.jobRound(ctx, engine, kind, setup, body)
			if err != nil {
				return rows, err
			}
			got, first, last, bad, repeats, err := r.drain(ctx, e, rc, n, limit)
			// Stopping cuts the last attempts short, which the relay logs: not the run's.
			note := warn.String()
			err = errors.Join(err, e.close())
			rc.close()
			if err != nil {
				return rows, fmt.Errorf("%s drain: %w", kind, err)
			}
			if bad > 0 {
				return rows, fmt.Errorf("%s drain: %d deliveries with a wrong body or signature", kind, bad)
			}
			if got < 2 {
				return rows, fmt.Errorf("%s drain: %d of %d events delivered in %s", kind, got, n, limit)
			}
			rate = append(rate, float64(got-1)/last.Seconds())
			firstAfter = append(firstAfter, micros(first))
			delivered = append(delivered, strconv.Itoa(got))
			partial = partial || got < n
			if repeats > 0 {
				note = jobNotes(fmt.Sprintf("%d delivered twice", repeats), note)
			}
			notes = append(notes, note)
		}
		rt := median(rate)
		rates = append(rates, rt)
		rows = append(rows, Row{
			Scenario:  fmt.Sprintf("jobengine drain (%s), %s, %s", engine, kind, setup),
			Terragate: fmt.Sprintf("%s (%d events)", fmtRate(rt), n),
			Spread:    spread(rate, fmtRate),
			Memory: jobNotes(append([]string{setup.settings(kind), "first delivery " + latency(median(firstAfter)) + " after start",
				byRound(partial, fmt.Sprintf("of %d delivered within %s", n, limit), delivered)}, notes...)...),
			Target: "≥ 1000/s", Met: rt >= 1000,
		})
	}
	vsOutbox(rows, rates, fmtRate)
	return rows, nil
}

// jobRound starts what one round of an engine needs: a receiver expecting body, and the
// engine of kind delivering to it, logging to a counter of its warnings.
func (r *Runner) jobRound(ctx context.Context, engine string, kind jobKind, setup jobSetup, body []byte) (*jobReceiver, jobEngine, *warnCount, error) {
	rc, err := startJobReceiver(body)
	if err != nil {
		return nil, nil, nil, err
	}
	warn := &warnCount{}
	setup.url = rc.URL
	e, err := r.openJobEngine(ctx, engine, kind, setup, slog.New(warn))
	if err != nil {
		rc.close()
		return nil, nil, nil, fmt.Errorf("%s: %w", kind, err)
	}
	return rc, e, warn, nil
}

// drain enqueues n events with the workers stopped, starts them and waits (up to limit)
// for the receiver to have every event. first is the time from start to the first
// arrival; last, from the first arrival to the last.
func (r *Runner) drain(ctx context.Context, e jobEngine, rc *jobReceiver, n int, limit time.Duration) (got int, first, last time.Duration, bad, repeats int, err error) {
	if err := r.enqueueAll(ctx, e, n, max(r.Cfg.InFlight, 1)); err != nil {
		return 0, 0, 0, 0, 0, err
	}
	start := time.Now()
	if err := e.start(ctx); err != nil {
		return 0, 0, 0, 0, 0, err
	}
	rc.wait(ctx, n, limit)
	got, f, l, bad, repeats := rc.counts()
	return got, f.Sub(start), l.Sub(f), bad, repeats, ctx.Err()
}

// jobLagRows measures Terra-to-backend lag with each engine's workers running: events
// enqueued at 500/s (open model), lag from the start of each enqueue to its arrival at the
// receiver.
func (r *Runner) jobLagRows(ctx context.Context, engine string, setup jobSetup) ([]Row, error) {
	c := r.Cfg
	body := LargeActivity(jobEventBytes)
	limit := 10 * time.Second
	var rows []Row
	var tails []float64
	for _, kind := range jobKinds {
		var achieved, p50, p99, enq99, late99 []float64
		var notes, undelivered []string
		partial := false
		for round := range c.Rounds {
			r.progress("jobengine lag (%s, %s) at %d/s, %s, round %d", engine, kind, jobLagRate, setup.settings(kind), round+1)
			rc, e, warn, err := r.jobRound(ctx, engine, kind, setup, body)
			if err != nil {
				return rows, err
			}
			lags, s, missing, err := r.lag(ctx, e, rc, limit)
			warned := warn.String()
			err = errors.Join(err, e.close())
			_, _, _, bad, repeats := rc.counts()
			rc.close()
			if err != nil {
				return rows, fmt.Errorf("%s lag: %w", kind, err)
			}
			if bad > 0 {
				return rows, fmt.Errorf("%s lag: %d deliveries with a wrong body or signature", kind, bad)
			}
			if len(lags) == 0 {
				return rows, fmt.Errorf("%s lag: no event arrived (%s)", kind, jobNotes(failures(s), warned))
			}
			ls := Stats{Latencies: lags}
			achieved = append(achieved, s.PerSecond())
			p50, p99 = append(p50, micros(ls.Quantile(.5))), append(p99, micros(ls.Quantile(.99)))
			enq99, late99 = append(enq99, micros(s.Quantile(.99))), append(late99, micros(s.LateQuantile(.99)))
			note := jobNotes(failures(s), warned)
			undelivered = append(undelivered, fmt.Sprintf("%d of %d", missing, len(lags)))
			partial = partial || missing > 0
			if repeats > 0 {
				note = jobNotes(fmt.Sprintf("%d delivered twice", repeats), note)
			}
			notes = append(notes, note)
		}
		rate, tail := median(achieved), median(p99)
		tails = append(tails, tail)
		clean := jobNotes(notes...) == "" && !partial
		rows = append(rows, Row{
			Scenario:  fmt.Sprintf("jobengine lag (%s), %s, %s", engine, kind, setup),
			Terragate: fmt.Sprintf("%s enqueued (%d/s offered); enqueue p99 %s%s", fmtRate(rate), jobLagRate, latency(median(enq99)), sentLate(median(late99))),
			P50:       latency(median(p50)), P99: latency(tail), Spread: spread(p99, latency),
			Memory: jobNotes(append([]string{setup.settings(kind),
				byRound(partial, fmt.Sprintf("not delivered %s after the last enqueue, lag counted to then", limit), undelivered)}, notes...)...),
			Target: "lag p99 < 200 ms at 500/s", Met: tail < 200_000 && rate >= 0.98*jobLagRate && clean,
		})
	}
	vsOutbox(rows, tails, latency)
	return rows, nil
}

// lag runs the open-model enqueue with the workers running, waits (up to limit) for every
// enqueued event to arrive, and returns the lags of the events enqueued after the warm-up,
// the enqueue run's stats and how many of those events had not arrived by then: an engine
// that falls behind never catches up, and those count with the lag they had so far, a
// lower bound.
func (r *Runner) lag(ctx context.Context, e jobEngine, rc *jobReceiver, limit time.Duration) (lags []time.Duration, s Stats, missing int, err error) {
	if err := e.start(ctx); err != nil {
		return nil, Stats{}, 0, err
	}
	var mu sync.Mutex
	started := map[int]time.Time{}
	op := func(ctx context.Context, i int) error {
		t0 := time.Now()
		mu.Lock()
		started[i] = t0
		mu.Unlock()
		err := e.enqueue(ctx, i)
		if err != nil {
			mu.Lock()
			delete(started, i)
			mu.Unlock()
		}
		return err
	}
	measureFrom := time.Now().Add(r.Cfg.WarmUp)
	s = Open(ctx, jobLagRate, 512, r.Cfg.WarmUp, r.Cfg.Duration, &r.next, op)
	mu.Lock()
	defer mu.Unlock()
	rc.wait(ctx, len(started), limit)
	now := time.Now()
	for i, t0 := range started {
		if t0.Before(measureFrom) {
			continue
		}
		at, ok := rc.arrival(i)
		if !ok {
			missing++
			at = now
		}
		lags = append(lags, at.Sub(t0))
	}
	slices.Sort(lags)
	return lags, s, missing, ctx.Err()
}
