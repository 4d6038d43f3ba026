package pgnotify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/terragate/terragate/internal/events"
)

const defaultTestDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// reachable is checked once: every test needs the same server.
var reachable = sync.OnceValues(func() (string, error) {
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		url = defaultTestDatabaseURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return url, err
	}
	return url, conn.Close(ctx)
})

// databaseURL returns the test database, skipping the test when none answers, except in CI
// where a missing database must not pass as green.
func databaseURL(t *testing.T) string {
	t.Helper()
	url, err := reachable()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required in CI (TEST_DATABASE_URL): %v", err)
		}
		t.Skipf("no PostgreSQL answers at TEST_DATABASE_URL (default %s); start one or set it: %v", defaultTestDatabaseURL, err)
	}
	return url
}

func newPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// uniqueChannel keeps tests (and concurrent test runs on the same database) from hearing
// each other.
func uniqueChannel(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "terragate_test_" + hex.EncodeToString(b)
}

// logs collects a bus's log lines and also shows them with the test's output.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	return l.out.Write(p)
}

func (l *logs) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

// instance is one terragate instance: its own pool and bus.
func instance(t *testing.T, url, channel string, opts Options) (*Bus, *logs) {
	t.Helper()
	l := &logs{out: t.Output()}
	opts.Channel = channel
	b, err := New(context.Background(), newPool(t, url), url, slog.New(slog.NewTextHandler(l, nil)), opts)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the pool, so it runs first: nothing logs after the test ends.
	t.Cleanup(b.Close)
	return b, l
}

func subscribe(t *testing.T, b *Bus, referenceID string) <-chan events.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := b.Subscribe(ctx, referenceID)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func receive(t *testing.T, ch <-chan events.Event, within time.Duration) events.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed")
		}
		return ev
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
	}
	return events.Event{}
}

// quiet fails if anything arrives within d: it is how "exactly once" and "never" are told
// from "not yet".
func quiet(t *testing.T, ch <-chan events.Event, d time.Duration, who string) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Errorf("%s got an unexpected event %+v", who, ev)
	case <-time.After(d):
	}
}

func event(ref string, typ events.Type, id string) events.Event {
	ev := events.Event{ReferenceID: ref, Type: typ, At: time.Now().UTC().Truncate(time.Microsecond)}
	if typ == events.SessionChanged {
		ev.SessionID = id
	} else {
		ev.UserID = id
	}
	return ev
}

func TestEventCrossesInstancesExactlyOnce(t *testing.T) {
	url := databaseURL(t)
	channel := uniqueChannel(t)
	a, _ := instance(t, url, channel, Options{})
	b, _ := instance(t, url, channel, Options{})
	onB := subscribe(t, b, "alice")
	onA := subscribe(t, a, "alice")

	for _, ev := range []events.Event{event("alice", events.Connected, "u1"), event("alice", events.SessionChanged, "s1")} {
		start := time.Now()
		if err := a.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		for _, sub := range []struct {
			name string
			ch   <-chan events.Event
		}{{"instance B", onB}, {"instance A (the publisher)", onA}} {
			got := receive(t, sub.ch, time.Second)
			if !got.At.Equal(ev.At) {
				t.Errorf("%s: At %v, want %v", sub.name, got.At, ev.At)
			}
			got.At = ev.At
			if got != ev {
				t.Errorf("%s: got %+v, want %+v", sub.name, got, ev)
			}
			t.Logf("%s received %s after %v", sub.name, ev.Type, time.Since(start).Round(time.Microsecond))
		}
	}
	quiet(t, onB, 200*time.Millisecond, "instance B")
	quiet(t, onA, 0, "instance A")
}

func TestEventReachesItsEndUserOnly(t *testing.T) {
	url := databaseURL(t)
	channel := uniqueChannel(t)
	a, _ := instance(t, url, channel, Options{})
	b, _ := instance(t, url, channel, Options{})
	alice := subscribe(t, b, "alice")
	bob := subscribe(t, b, "bob")
	aliceOnA := subscribe(t, a, "alice")

	for i := range 5 {
		if err := a.Publish(context.Background(), event("bob", events.Revoked, "bob-user-"+string(rune('0'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	// One listener delivers in order, so once alice's own event is in, bob's have all been
	// dispatched, and none of them came to her first.
	mine := event("alice", events.Connected, "alice-user")
	if err := a.Publish(context.Background(), mine); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan events.Event{"alice on B": alice, "alice on A": aliceOnA} {
		if got := receive(t, ch, time.Second); got.ReferenceID != "alice" || got.UserID != "alice-user" {
			t.Errorf("%s got %+v", name, got)
		}
		quiet(t, ch, 0, name)
	}
	for range 5 {
		if got := receive(t, bob, time.Second); got.ReferenceID != "bob" {
			t.Errorf("bob got %+v", got)
		}
	}
	quiet(t, bob, 0, "bob")
}

func TestListenerReconnects(t *testing.T) {
	url := databaseURL(t)
	channel := uniqueChannel(t)
	// A floor of 200ms keeps the disconnected window wide enough to observe.
	a, logsA := instance(t, url, channel, Options{MinBackoff: 200 * time.Millisecond, MaxBackoff: time.Second})
	b, _ := instance(t, url, channel, Options{})
	onA := subscribe(t, a, "alice")
	pid := a.pid.Load()

	admin := newPool(t, url)
	var killed bool
	if err := admin.QueryRow(context.Background(), "SELECT pg_terminate_backend($1)", pid).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the listener %d: %v, %v", pid, killed, err)
	}
	start := time.Now()
	if !eventually(time.Second, func() bool { return !a.Connected() }) {
		t.Fatal("Connected() stayed true after the listener's backend was terminated")
	}
	t.Logf("disconnection noticed after %v", time.Since(start).Round(time.Microsecond))
	if err := a.Publish(context.Background(), event("alice", events.Error, "u1")); !errors.Is(err, ErrNotListening) {
		t.Errorf("Publish while disconnected: %v, want ErrNotListening", err)
	}
	if !eventually(3*time.Second, a.Connected) {
		t.Fatal("Connected() did not come back")
	}
	t.Logf("reconnected after %v", time.Since(start).Round(time.Microsecond))
	if now := a.pid.Load(); now == pid {
		t.Errorf("still backend %d", now)
	}
	if n := logsA.count("event listener reconnected"); n != 1 {
		t.Errorf("%d reconnection log lines, want 1", n)
	}

	// Published on the other instance, so it is the restored LISTEN that hears it.
	want := event("alice", events.Reauthenticated, "u2")
	if err := b.Publish(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, onA, time.Second); got.UserID != want.UserID || got.Type != want.Type {
		t.Errorf("got %+v, want %+v", got, want)
	}
	quiet(t, onA, 100*time.Millisecond, "alice")
}

// The listener's idle ping must neither drop the connection nor lose what arrives around it.
func TestQuietListenerStaysConnected(t *testing.T) {
	url := databaseURL(t)
	channel := uniqueChannel(t)
	a, logsA := instance(t, url, channel, Options{PingInterval: 10 * time.Millisecond})
	ch := subscribe(t, a, "alice")
	pid := a.pid.Load()
	time.Sleep(150 * time.Millisecond) // several pings
	// Fewer events than a subscriber's buffer holds: it reads them only afterwards.
	for i := range 12 {
		if err := a.Publish(context.Background(), event("alice", events.Connected, "u1")); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			time.Sleep(15 * time.Millisecond)
		}
	}
	for range 12 {
		receive(t, ch, time.Second)
	}
	if !a.Connected() || a.pid.Load() != pid || logsA.count("disconnected") != 0 {
		t.Errorf("the listener reconnected: connected %v, pid %d -> %d", a.Connected(), pid, a.pid.Load())
	}
}

func TestMalformedPayloadsAreIgnored(t *testing.T) {
	url := databaseURL(t)
	channel := uniqueChannel(t)
	a, logsA := instance(t, url, channel, Options{})
	alice := subscribe(t, a, "alice")
	nobody := subscribe(t, a, "")

	malformed := []string{
		``,
		`not json`,
		`null`,
		`[1,2]`,
		`{}`,
		`{"r":5,"t":"CONNECTED","u":"u1"}`,
		`{"r":"","t":"CONNECTED","u":"u1"}`,
		`{"r":"alice","t":"NOT_A_TYPE","u":"u1"}`,
		`{"r":"alice","t":"CONNECTED"}`,
		`{"r":"alice","t":"SESSION_CHANGED","u":"u1"}`,
		`{"r":"alice","t":"CONNECTED","u":"u1","a":"yesterday"}`,
		`{"r":"alice","t":"CONNECTED","u":"u1"} {"r":"alice"}`,
	}
	raw := newPool(t, url)
	for _, p := range malformed {
		if _, err := raw.Exec(context.Background(), "SELECT pg_notify($1, $2)", channel, p); err != nil {
			t.Fatal(err)
		}
	}
	// Sent last by the same session, so it arrives after all of the malformed ones.
	if _, err := raw.Exec(context.Background(), "SELECT pg_notify($1, $2)", channel,
		`{"r":"alice","t":"CONNECTED","u":"u1","a":"2026-01-02T03:04:05Z","future":"ignored"}`); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, alice, time.Second); got.UserID != "u1" || got.Type != events.Connected {
		t.Errorf("got %+v", got)
	}
	quiet(t, alice, 0, "alice")
	quiet(t, nobody, 0, `the subscriber of ""`)
	if n := logsA.count("malformed event ignored"); n != len(malformed) {
		t.Errorf("%d malformed payloads logged, want %d", n, len(malformed))
	}
	if !a.Connected() {
		t.Error("a malformed payload broke the listener")
	}
}

func TestPublishRefusesWhatCannotBeCarried(t *testing.T) {
	url := databaseURL(t)
	a, _ := instance(t, url, uniqueChannel(t), Options{})
	for name, ev := range map[string]events.Event{
		"no reference id":  event("", events.Connected, "u1"),
		"unknown type":     event("alice", "BOGUS", "u1"),
		"no user id":       {ReferenceID: "alice", Type: events.Connected},
		"no session id":    {ReferenceID: "alice", Type: events.SessionChanged, UserID: "u1"},
		"too large a user": event("alice", events.Connected, strings.Repeat("x", 8000)),
	} {
		t.Run(name, func(t *testing.T) {
			if err := a.Publish(context.Background(), ev); !errors.Is(err, ErrInvalidEvent) {
				t.Errorf("got %v, want ErrInvalidEvent", err)
			}
		})
	}
}

func TestUnsubscribeAndCloseLeaveNothingBehind(t *testing.T) {
	url := databaseURL(t)
	pool := newPool(t, url)
	// Earlier tests' pools and connections may still be winding down.
	before := settledGoroutines()

	b, err := New(context.Background(), pool, "", slog.New(slog.NewTextHandler(t.Output(), nil)), Options{Channel: uniqueChannel(t)})
	if err != nil {
		t.Fatal(err)
	}
	if runtime.NumGoroutine() <= before {
		t.Fatal("no listener goroutine to check for") // keeps the leak check below honest
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := b.Subscribe(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Error("an event arrived instead of the close")
		}
	case <-time.After(time.Second):
		t.Fatal("the subscription was not closed when its context ended")
	}
	if n := b.local.Subscribers(); n != 0 {
		t.Errorf("%d subscribers left", n)
	}

	b.Close()
	b.Close() // idempotent
	if b.Connected() {
		t.Error("Connected() after Close")
	}
	if !eventually(2*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Close, %d before New:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
	}
	if _, err := b.Subscribe(context.Background(), "alice"); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	if err := b.Publish(context.Background(), event("alice", events.Connected, "u1")); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	url := databaseURL(t)
	pool := newPool(t, url)
	log := slog.New(slog.DiscardHandler)
	for name, tc := range map[string]struct {
		pool       *pgxpool.Pool
		connString string
		opts       Options
	}{
		"no pool":              {nil, "", Options{}},
		"too long a channel":   {pool, "", Options{Channel: strings.Repeat("c", 64)}},
		"inverted backoff":     {pool, "", Options{MinBackoff: time.Second, MaxBackoff: time.Millisecond}},
		"bad connString":       {pool, "postgres://%zz", Options{}},
		"unreachable listener": {pool, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", Options{}},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := New(context.Background(), tc.pool, tc.connString, log, tc.opts)
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	lo, hi := 100*time.Millisecond, 10*time.Second
	for attempt, ceiling := range []time.Duration{lo, 2 * lo, 4 * lo, 8 * lo} {
		for range 100 {
			if d := backoff(attempt, lo, hi); d < ceiling/2 || d > ceiling {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
		}
	}
	seen := map[time.Duration]bool{}
	for range 100 {
		d := backoff(1000, lo, hi)
		if d < hi/2 || d > hi {
			t.Fatalf("attempt 1000: %v outside [%v, %v]", d, hi/2, hi)
		}
		seen[d] = true
	}
	if len(seen) < 50 {
		t.Errorf("only %d distinct waits in 100: no jitter", len(seen))
	}
}

func eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// settledGoroutines waits (briefly) for the goroutine count to stop moving and returns it.
func settledGoroutines() int {
	n, stable := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(2 * time.Second); stable < 5 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			stable++
		} else {
			n, stable = m, 0
		}
	}
	return n
}
