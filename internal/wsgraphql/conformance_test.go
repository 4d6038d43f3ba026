package wsgraphql_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/wsgraphql"
)

// clientsDir holds the reference client libraries, pinned by its package-lock.json.
var clientsDir = filepath.Join("testdata", "clients")

// requireClients returns the node binary, or skips (locally) or fails (in CI) saying how
// to install what is missing.
func requireClients(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	var missing []string
	if err != nil {
		missing = append(missing, "node on PATH (apt-get install -y nodejs npm)")
	}
	for _, lib := range []string{"graphql-ws", "subscriptions-transport-ws", "ws"} {
		if _, err := os.Stat(filepath.Join(clientsDir, "node_modules", lib, "package.json")); err != nil {
			missing = append(missing, lib+" (npm ci --prefix internal/wsgraphql/"+filepath.ToSlash(clientsDir)+")")
		}
	}
	if len(missing) == 0 {
		return node
	}
	msg := "the conformance test needs " + strings.Join(missing, ", ") + "; .ci/run installs them"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// clientResult is what conformance.mjs reports: the wire's close code and reason, a
// refused handshake's error, the message types received, and what the library reported.
type clientResult struct {
	CloseCode      int      `json:"closeCode"`
	CloseReason    string   `json:"closeReason"`
	HandshakeError string   `json:"handshakeError"`
	Received       []string `json:"received"`
	Library        []string `json:"library"`
	TimedOut       bool     `json:"timedOut"`
}

const (
	transportWS = "graphql-transport-ws"
	legacyWS    = "graphql-ws"
)

// TestConformance drives the transport with the reference client of each subprotocol: the
// graphql-ws library (graphql-transport-ws) and subscriptions-transport-ws (the legacy
// graphql-ws), both as shipped, given a ws WebSocket that sets the Origin and records the
// close. The libraries provoke every case themselves (generateID, disablePong, connection
// params that never resolve) except a client that stops reading: TestSlowReaderIsDropped.
func TestConformance(t *testing.T) {
	node := requireClients(t)
	const allowed = "http://app.example"
	cases := []struct {
		name      string
		protocols []string // the subprotocols that have the case
		cfg       wsgraphql.Config
		origin    string
		// during runs while the client does, in the test's goroutine.
		during func(t *testing.T, s *testServer)
		check  func(t *testing.T, protocol string, r clientResult, s *testServer)
	}{
		{
			name: "origin-allowed", protocols: []string{transportWS, legacyWS},
			cfg: wsgraphql.Config{Origins: []string{"app.example"}}, origin: allowed,
			during: func(t *testing.T, s *testServer) { s.hub.await(t, 1); s.hub.publish("tick") },
			check: func(t *testing.T, _ string, r clientResult, _ *testServer) {
				if !slices.Contains(r.Library, `next:{"ticks":"tick"}`) {
					t.Errorf("the library reported %q, want the event", r.Library)
				}
			},
		},
		{
			name: "origin-refused", protocols: []string{transportWS, legacyWS},
			cfg: wsgraphql.Config{Origins: []string{"app.example"}}, origin: "http://evil.example",
			check: func(t *testing.T, _ string, r clientResult, s *testServer) {
				if !strings.Contains(r.HandshakeError, "403") || len(r.Received) > 0 {
					t.Errorf("handshake error %q and %q received, want a 403 and nothing", r.HandshakeError, r.Received)
				}
				if n := s.hub.count(); n != 0 {
					t.Errorf("%d subscriptions running", n)
				}
			},
		},
		{
			name: "forbidden", protocols: []string{transportWS, legacyWS},
			check: func(t *testing.T, protocol string, r clientResult, _ *testServer) {
				if r.CloseCode != 4403 || slices.Contains(r.Received, "connection_ack") {
					t.Errorf("closed %d %q after %q, want 4403 and no ack", r.CloseCode, r.CloseReason, r.Received)
				}
				if protocol == legacyWS && !slices.Contains(r.Received, "connection_error") {
					t.Errorf("received %q, want connection_error first", r.Received)
				}
			},
		},
		{
			name: "duplicate-id", protocols: []string{transportWS, legacyWS},
			check: func(t *testing.T, _ string, r clientResult, _ *testServer) {
				if r.CloseCode != 4409 || r.CloseReason != "Subscriber for dup already exists" {
					t.Errorf("closed %d %q, want 4409", r.CloseCode, r.CloseReason)
				}
			},
		},
		{
			name: "init-timeout", protocols: []string{transportWS, legacyWS},
			cfg: wsgraphql.Config{InitTimeout: 200 * time.Millisecond},
			check: func(t *testing.T, _ string, r clientResult, _ *testServer) {
				if r.CloseCode != 1002 || r.CloseReason != "connection initialisation timeout" || len(r.Received) > 0 {
					t.Errorf("closed %d %q after %q, want 1002 and the timeout", r.CloseCode, r.CloseReason, r.Received)
				}
			},
		},
		{
			// The legacy protocol has no pong: its keep-alives are one-way.
			name: "ping-drop", protocols: []string{transportWS},
			cfg: wsgraphql.Config{KeepAlive: 100 * time.Millisecond},
			check: func(t *testing.T, _ string, r clientResult, s *testServer) {
				pings := 0
				for _, typ := range r.Received {
					if typ == "ping" {
						pings++
					}
				}
				// Dropped, not closed: a client that does not answer would not answer a close.
				if pings < 2 || r.CloseCode != 1006 {
					t.Errorf("%d pings, then closed %d %q: want two unanswered pings, then a drop (1006)", pings, r.CloseCode, r.CloseReason)
				}
				s.hub.await(t, 0)
			},
		},
		{
			name: "oversized", protocols: []string{transportWS, legacyWS},
			cfg: wsgraphql.Config{ReadLimit: 64 << 10},
			check: func(t *testing.T, _ string, r clientResult, s *testServer) {
				if r.CloseCode != 1009 {
					t.Errorf("closed %d %q, want 1009 message too big", r.CloseCode, r.CloseReason)
				}
				if n := s.hub.count(); n != 0 {
					t.Errorf("%d subscriptions running", n)
				}
			},
		},
		{
			name: "shutdown", protocols: []string{transportWS, legacyWS},
			during: func(t *testing.T, s *testServer) {
				s.hub.await(t, 1)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := s.srv.Config.Shutdown(ctx); err != nil {
					t.Errorf("shutdown: %v", err)
				}
			},
			check: func(t *testing.T, _ string, r clientResult, s *testServer) {
				if r.CloseCode != 1000 || r.CloseReason != "terminated" {
					t.Errorf("closed %d %q, want 1000 terminated: %+v", r.CloseCode, r.CloseReason, r)
				}
				s.hub.await(t, 0)
			},
		},
	}
	for _, protocol := range []string{transportWS, legacyWS} {
		t.Run(protocol, func(t *testing.T) {
			for _, c := range cases {
				if !slices.Contains(c.protocols, protocol) {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					s := serve(t, c.cfg)
					origin := c.origin
					if origin == "" {
						origin = "http://" + s.srv.Listener.Addr().String()
					}
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					cmd := exec.CommandContext(ctx, node, "conformance.mjs", c.name, protocol, s.url, origin)
					cmd.Dir = clientsDir
					var stdout, stderr bytes.Buffer
					cmd.Stdout, cmd.Stderr = &stdout, &stderr
					if err := cmd.Start(); err != nil {
						t.Fatal(err)
					}
					if c.during != nil {
						c.during(t, s)
					}
					if err := cmd.Wait(); err != nil {
						t.Fatalf("node: %v: %s", err, stderr.String())
					}
					var r clientResult
					if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
						t.Fatalf("client output %q: %v (%s)", stdout.String(), err, stderr.String())
					}
					if r.TimedOut {
						t.Fatalf("the client saw nothing conclusive in 15 s: %+v", r)
					}
					c.check(t, protocol, r, s)
				})
			}
		})
	}
}

// A client that stops reading is dropped once a write to it has waited WriteTimeout, in
// both subprotocols, ending its subscription. Neither client library can stop reading, so
// a raw WebSocket client plays it: it subscribes, then reads nothing while events of 64 KB
// fill the socket's buffers.
func TestSlowReaderIsDropped(t *testing.T) {
	for _, protocol := range []string{transportWS, legacyWS} {
		t.Run(protocol, func(t *testing.T) {
			const writeTimeout = 200 * time.Millisecond
			s := serve(t, wsgraphql.Config{WriteTimeout: writeTimeout})
			conn := s.dial(t, protocol)
			subscribe(t, conn, "1")
			s.hub.await(t, 1)
			event := strings.Repeat("x", 64<<10)
			deadline := time.Now().Add(10 * time.Second)
			for s.hub.count() > 0 {
				if time.Now().After(deadline) {
					t.Fatal("a client that read nothing for 10 s still has its subscription")
				}
				s.hub.publish(event)
				time.Sleep(time.Millisecond) // pace the publisher, not a wait for the drop
			}
		})
	}
}
