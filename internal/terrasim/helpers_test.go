package terrasim_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/terrasim"
)

const (
	testDevID  = "dev-test"
	testAPIKey = "key-very-secret-4711"
	testSecret = "whsec-test-secret"
)

// received is one webhook request as the receiver saw it.
type received struct {
	Header   http.Header
	Body     []byte
	VerifyOK bool
}

// receiver is a real webhook endpoint that verifies signatures and answers with a
// scripted list of statuses (then 200).
type receiver struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	statuses []int
	got      []received
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	t.Helper()
	rc := &receiver{t: t, statuses: statuses}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, err := terra.VerifySignature([]byte(testSecret), r.Header, body, time.Now())
		rc.mu.Lock()
		rc.got = append(rc.got, received{Header: r.Header.Clone(), Body: body, VerifyOK: err == nil})
		status := http.StatusOK
		if len(rc.statuses) > 0 {
			status, rc.statuses = rc.statuses[0], rc.statuses[1:]
		}
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// event waits for the first received event of type typ and returns its decoded JSON.
func (rc *receiver) event(typ string) (map[string]any, received) {
	rc.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range rc.requests() {
			var m map[string]any
			if json.Unmarshal(r.Body, &m) == nil && m["type"] == typ {
				return m, r
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	rc.t.Fatalf("no %s webhook received", typ)
	return nil, received{}
}

// lineLog collects log output so tests can look for secrets in it.
type lineLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type env struct {
	emu *terrasim.Emulator
	srv *httptest.Server
	log *lineLog
}

// newEnv starts an emulator over loopback. Credentials, a quick retry schedule and a
// capturing logger are filled in when cfg leaves them empty.
func newEnv(t *testing.T, cfg terrasim.Config) *env {
	t.Helper()
	if cfg.DevID == "" {
		cfg.DevID, cfg.APIKey = testDevID, testAPIKey
	}
	if cfg.WebhookSecret == "" {
		cfg.WebhookSecret = testSecret
	}
	if cfg.RetryDelays == nil {
		cfg.RetryDelays = []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}
	}
	lg := &lineLog{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(lg, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	emu := terrasim.New(cfg)
	srv := httptest.NewServer(emu)
	t.Cleanup(func() {
		srv.Close()
		emu.Close()
		if strings.Contains(lg.String(), testAPIKey) || strings.Contains(lg.String(), testSecret) {
			t.Errorf("a secret reached the log:\n%s", lg.String())
		}
	})
	return &env{emu: emu, srv: srv, log: lg}
}

// call makes one HTTP request; creds adds the right credentials.
func (e *env) call(t *testing.T, method, path, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), testAPIKey) {
		t.Errorf("%s %s: the API key is in the response", method, path)
	}
	return resp, b
}

// creds are the headers of a well-behaved JSON client.
func creds() map[string]string {
	return map[string]string{"dev-id": testDevID, "x-api-key": testAPIKey, "Content-Type": "application/json"}
}

var noRedirect = &http.Client{
	Timeout:       5 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, b)
	}
	return m
}

// waitFor polls cond until it holds or a couple of seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
