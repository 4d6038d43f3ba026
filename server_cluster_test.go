package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/engine"
	"github.com/terragate/terragate/internal/store/postgres/pgtest"
	"github.com/terragate/terragate/internal/terrasim"
)

// runMainVar makes the test binary run terragate's main instead of the tests, so a test
// can start real gateway processes without building a binary.
const runMainVar = "TERRAGATE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainVar) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// dbProxy stands between the gateways and PostgreSQL so a test can take the database away
// and bring it back without stopping the server other tests use.
type dbProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func newDBProxy(t *testing.T, target string) *dbProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dbProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.setDown(true) })
	return p
}

func (p *dbProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close(); c.Close() }()
		go func() { _, _ = io.Copy(c, up); up.Close(); c.Close() }()
	}
}

// setDown drops every connection and refuses new ones (down), or lets them through again.
func (p *dbProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]struct{}{}
	}
}

// startProcess runs terragate as a separate process and returns its address.
// process is a gateway running as a separate process.
type process struct {
	url    string
	logs   *syncBuffer
	cmd    *exec.Cmd
	done   chan error
	killed bool
}

// kill ends the process at once, as a crash or an OOM kill would.
func (p *process) kill(t *testing.T) {
	t.Helper()
	p.killed = true
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func startProcess(t *testing.T, env map[string]string) (string, *syncBuffer) {
	t.Helper()
	p := startGatewayProcess(t, env)
	return p.url, p.logs
}

// startGatewayProcess runs terragate as a separate process; it is stopped with SIGTERM
// (and must exit cleanly) when the test ends, unless the test killed it.
func startGatewayProcess(t *testing.T, env map[string]string) *process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), runMainVar+"=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, logs := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{logs: logs, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if p.killed {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("gateway process: %v\n%s", err, logs.String())
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("gateway process did not stop on SIGTERM")
		}
	})
	p.url = waitListening(t, stdout, p.done)
	return p
}

func readyStatus(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitReady(t *testing.T, base string, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if readyStatus(t, base) == want {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s/readyz never answered %d", base, want)
	return 0
}

// TestTwoInstancesOnPostgres runs two gateway processes on one PostgreSQL: a webhook
// received by A reaches a subscriber on B, and both ride out a database outage.
func TestTwoInstancesOnPostgres(t *testing.T) {
	schemaURL := pgtest.NewSchema(t)
	u, err := url.Parse(schemaURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newDBProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()

	emuLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	emuURL := "http://" + emuLn.Addr().String()
	env := map[string]string{
		"ADDR":                 "127.0.0.1:0",
		"DATABASE_URL":         u.String(),
		"TERRA_DEV_ID":         testDevID,
		"TERRA_API_KEY":        testAPIKey,
		"TERRA_WEBHOOK_SECRET": testWebhookSecret,
		"AUTH_JWT_SECRET":      testJWTSecret,
		"TERRA_API_URL":        emuURL + "/v2",
		"TERRA_WIDGET_URL":     emuURL + "/api/widget/session",
		"TERRA_TIMEOUT":        "2s",
	}
	a, logsA := startProcess(t, env)
	b, logsB := startProcess(t, env)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("A's log:\n%s\nB's log:\n%s", logsA, logsB)
		}
	})

	emu := terrasim.New(terrasim.Config{DevID: testDevID, APIKey: testAPIKey, WebhookURL: a + "/webhooks/terra",
		WebhookSecret: testWebhookSecret, PublicURL: emuURL, RetryDelays: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond, time.Second}})
	emuSrv := &http.Server{Handler: emu, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = emuSrv.Serve(emuLn) }()
	t.Cleanup(func() { emu.Close(); _ = emuSrv.Close() })

	ga := &gateway{t: t, url: a, emu: emu, seen: &syncBuffer{}}
	gb := &gateway{t: t, url: b, emu: emu, seen: &syncBuffer{}}
	alice := token(t, "alice")
	ws, err := gb.dialWS(alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.subscribe("e", connectionEventsSub, nil)
	ws.registered()

	s := ga.createSession(alice, map[string]any{"providers": []string{"OURA"}})
	sent := time.Now()
	if _, err := emu.Complete(terraSessionID(t, s), "OURA", true); err != nil {
		t.Fatal(err)
	}
	m, ok := ws.next("e", 5*time.Second)
	if !ok {
		t.Fatal("B heard nothing of the webhook A received")
	}
	took := time.Since(sent)
	ev := decodeNext[connectionEvent](t, m).ConnectionEvents
	if ev.Type != "CONNECTED" || ev.TerraUser.Provider != "OURA" {
		t.Errorf("B got %+v", ev)
	}
	if took > time.Second {
		t.Errorf("B heard of it after %v, want within a second", took)
	}
	t.Logf("webhook on A to subscriber on B: %v", took)

	// The database goes away for a moment: both instances say they are not ready, then
	// recover on their own.
	proxy.setDown(true)
	for _, base := range []string{a, b} {
		t.Logf("%s not ready after %v", base, waitReady(t, base, http.StatusServiceUnavailable, 15*time.Second))
	}
	proxy.setDown(false)
	for _, base := range []string{a, b} {
		t.Logf("%s ready again after %v", base, waitReady(t, base, http.StatusOK, 30*time.Second))
	}
	// And events flow again, from A's webhook to B's subscriber.
	users := gb.waitUsers(alice, false, "the connection, read on B", func(u []terraUser) bool { return len(u) == 1 })
	if err := emu.Deauth(users[0].UserID); err != nil {
		t.Fatal(err)
	}
	if m, ok := ws.next("e", 10*time.Second); !ok || decodeNext[connectionEvent](t, m).ConnectionEvents.Type != "DISCONNECTED" {
		t.Errorf("after the outage B got %s %s", m.Type, m.Payload)
	}
}

func TestMigrateCommand(t *testing.T) {
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "migrate.db")
	getenv := func(k string) string {
		return map[string]string{
			"DATABASE_URL": dbURL, "TERRA_DEV_ID": "d", "TERRA_API_KEY": "k", "TERRA_WEBHOOK_SECRET": "w",
			"AUTH_JWT_SECRET": "j", "ADDR": "127.0.0.1:0", "MIGRATE_ON_START": "false",
		}[k]
	}
	migrate := func(cmd string) string {
		t.Helper()
		out := &syncBuffer{}
		if err := run(context.Background(), []string{"migrate", cmd}, getenv, out, io.Discard); err != nil {
			t.Fatalf("migrate %s: %v", cmd, err)
		}
		return out.String()
	}
	// Not migrated, and told not to migrate: the gateway refuses to start and says why.
	err := run(context.Background(), nil, getenv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "terragate migrate up") {
		t.Fatalf("start on an unmigrated database: %v", err)
	}
	if st := migrate("status"); !strings.Contains(st, "00001") || !strings.Contains(strings.ToLower(st), "pending") {
		t.Errorf("status before up:\n%s", st)
	}
	migrate("up")
	if st := migrate("status"); strings.Contains(strings.ToLower(st), "pending") {
		t.Errorf("status after up:\n%s", st)
	}
	// Now it starts without migrating.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stdout := &syncBuffer{}
	go func() { done <- run(ctx, nil, getenv, stdout, io.Discard) }()
	base := waitListening(t, stdout, done)
	if code := readyStatus(t, base); code != http.StatusOK {
		t.Errorf("readyz = %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	migrate("down")
	if st := migrate("status"); !strings.Contains(strings.ToLower(st), "pending") {
		t.Errorf("status after down:\n%s", st)
	}
	if err := run(context.Background(), []string{"migrate", "sideways"}, getenv, io.Discard, io.Discard); err == nil {
		t.Error("an unknown migrate command was accepted")
	}
}

// TestNoAcknowledgedWebhookIsLost sends a few thousand signed webhooks concurrently, kills
// the gateway with SIGKILL in the middle, restarts it, and lets the senders retry what was
// not acknowledged, as Terra does: every acknowledged event must be applied, exactly once.
// It runs on SQLite, and on PostgreSQL in the PostgreSQL pass.
func TestNoAcknowledgedWebhookIsLost(t *testing.T) {
	const events, senders = 2000, 16
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dbURL := testDatabaseURL(t)
	env := map[string]string{
		"ADDR": addr, "DATABASE_URL": dbURL, "TERRA_DEV_ID": testDevID, "TERRA_API_KEY": testAPIKey,
		"TERRA_WEBHOOK_SECRET": testWebhookSecret, "AUTH_JWT_SECRET": testJWTSecret, "LOG_LEVEL": "warn",
	}
	first := startGatewayProcess(t, env)

	var acked, attempts atomic.Int64
	next := make(chan int, events)
	for i := range events {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for range senders {
		wg.Go(func() {
			for i := range next {
				body := authEvent(fmt.Sprintf("u-%04d", i), "OURA", fmt.Sprintf("user-%d", i%50))
				for time.Now().Before(deadline) {
					attempts.Add(1)
					req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/webhooks/terra", bytes.NewReader(body))
					req.Header = signedHeader(body, time.Now(), fmt.Sprintf("trace-%04d", i))
					resp, err := client.Do(req)
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK {
							acked.Add(1)
							break
						}
					}
					time.Sleep(20 * time.Millisecond) // Terra backs off; a short pause will do
				}
			}
		})
	}
	for acked.Load() < events/4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	first.kill(t)
	killedAt := acked.Load()
	startGatewayProcess(t, env)
	wg.Wait()
	if acked.Load() != events {
		t.Fatalf("%d of %d events acknowledged before the deadline", acked.Load(), events)
	}
	t.Logf("killed after %d acknowledgements; %d events, %d attempts in all", killedAt, events, attempts.Load())

	st, err := engine.Open(context.Background(), dbURL, engine.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	users, err := st.ListTerraUsersPage(context.Background(), store.UserFilter{}, store.Page{First: 1})
	if err != nil {
		t.Fatal(err)
	}
	if users.TotalCount != events {
		t.Errorf("%d Terra users stored, want %d", users.TotalCount, events)
	}
	// One inbox row per delivery: duplicates were acknowledged, not applied again.
	rows, after := 0, ""
	for {
		p, err := st.ListWebhookEvents(context.Background(), store.InboxFilter{}, store.Page{First: 100, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			if e.Outcome != store.InboxApplied {
				t.Errorf("inbox row %d: outcome %q", e.ID, e.Outcome)
			}
		}
		rows += len(p.Events)
		if !p.HasNextPage {
			break
		}
		after = p.EndCursor
	}
	if rows != events {
		t.Errorf("%d inbox rows, want %d", rows, events)
	}
}

// TestSIGTERMUnderLoad stops a gateway while requests are in flight (each waiting on a slow
// Terra): every one of them is answered, and afterwards new connections are refused.
func TestSIGTERMUnderLoad(t *testing.T) {
	emu := terrasim.New(terrasim.Config{DevID: testDevID, APIKey: testAPIKey})
	emuSrv := httptest.NewServer(emu)
	t.Cleanup(func() { emuSrv.Close(); emu.Close() })
	env := map[string]string{
		"ADDR": "127.0.0.1:0", "DATABASE_URL": testDatabaseURL(t), "TERRA_DEV_ID": testDevID, "TERRA_API_KEY": testAPIKey,
		"TERRA_WEBHOOK_SECRET": testWebhookSecret, "AUTH_JWT_SECRET": testJWTSecret, "LOG_LEVEL": "warn",
		"TERRA_API_URL": emuSrv.URL + "/v2", "TERRA_WIDGET_URL": emuSrv.URL + "/api/widget/session", "TERRA_RETRIES": "0",
	}
	p := startGatewayProcess(t, env)
	g := &gateway{t: t, url: p.url, seen: &syncBuffer{}}
	alice := token(t, "alice")

	providers := []string{"OURA", "GARMIN", "FITBIT", "WITHINGS", "POLAR", "SUUNTO", "COROS", "WAHOO"}
	emu.Fail("/api/widget/session", terrasim.Fault{Delay: 800 * time.Millisecond, Times: len(providers)})
	type result struct {
		resp gqlResponse
		err  error
	}
	results := make(chan result, len(providers))
	for _, prov := range providers {
		go func() {
			r, _, err := g.tryGQL(nil, alice, createSession, map[string]any{"in": map[string]any{"providers": []string{prov}}})
			results <- result{r, err}
		}()
	}
	// Wait until every request has reached Terra, i.e. is in flight inside the gateway.
	deadline := time.Now().Add(5 * time.Second)
	for len(emu.Requests()) < len(providers) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	p.killed = true // stopped here, not by the cleanup
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range providers {
		if r := <-results; r.err != nil || len(r.resp.Errors) > 0 || !strings.Contains(string(r.resp.Data), `"url"`) {
			t.Errorf("an in-flight request was lost: %v %+v %s", r.err, r.resp.Errors, r.resp.Data)
		}
	}
	if err := <-p.done; err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if _, err := http.Get(p.url + "/healthz"); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("after shutdown: %v, want connection refused", err)
	}
}
