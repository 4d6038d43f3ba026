package limit

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPerIP(t *testing.T) {
	c := newClock()
	l := New(Config{Rate: 1.0 / 60, Burst: 2, Now: c.Now})
	h := PerIP(l, func(r *http.Request) netip.Addr {
		return netip.MustParseAddr(r.Header.Get("Test-Client"))
	}, JSON, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	do := func(client string) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, "/graphql", nil)
		r.Header.Set("Test-Client", client)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	tests := []struct {
		name, client  string
		advance       time.Duration
		wantStatus    int
		wantRetryWait string
	}{
		{name: "first", client: "192.0.2.1", wantStatus: 200},
		{name: "second", client: "192.0.2.1", wantStatus: 200},
		{name: "third refused", client: "192.0.2.1", wantStatus: 429, wantRetryWait: "60"},
		{name: "rounded up", client: "192.0.2.1", advance: 500 * time.Millisecond, wantStatus: 429, wantRetryWait: "60"},
		{name: "other address", client: "192.0.2.2", wantStatus: 200},
		{name: "IPv4-mapped is the same client", client: "::ffff:192.0.2.1", wantStatus: 429, wantRetryWait: "60"},
		{name: "IPv6", client: "2001:db8:1:2::1", wantStatus: 200},
		{name: "IPv6 same /64", client: "2001:db8:1:2::2", wantStatus: 200},
		{name: "IPv6 same /64 again", client: "2001:db8:1:2:ffff::9", wantStatus: 429, wantRetryWait: "60"},
		{name: "IPv6 next /64", client: "2001:db8:1:3::1", wantStatus: 200},
		{name: "refilled a minute later", client: "192.0.2.1", advance: 59500 * time.Millisecond, wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.Advance(tt.advance)
			w := do(tt.client)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", w.Code, tt.wantStatus)
			}
			if got := w.Header().Get("Retry-After"); got != tt.wantRetryWait {
				t.Fatalf("Retry-After %q, want %q", got, tt.wantRetryWait)
			}
			if tt.wantStatus != 429 {
				return
			}
			var body struct {
				Error             string `json:"error"`
				RetryAfterSeconds int    `json:"retryAfterSeconds"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if body.Error != "rate limited" || body.RetryAfterSeconds != 60 {
				t.Fatalf("body %+v", body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}
}

func TestTooManyRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		wait time.Duration
		want string
	}{
		{0, "1"},
		{time.Nanosecond, "1"},
		{time.Second, "1"},
		{time.Second + time.Millisecond, "2"},
		{59*time.Second + 1, "60"},
	} {
		w := httptest.NewRecorder()
		TooMany(w, httptest.NewRequest(http.MethodPost, "/", nil), JSON, tt.wait)
		if got := w.Header().Get("Retry-After"); got != tt.want {
			t.Errorf("TooMany(%v): Retry-After %q, want %q", tt.wait, got, tt.want)
		}
	}
}

func TestPerIPNilLimiter(t *testing.T) {
	next := http.NotFoundHandler()
	if h := PerIP(nil, nil, GraphQL, next); h == nil {
		t.Fatal("nil handler")
	}
}

func TestMaxBody(t *testing.T) {
	const limit = 1024
	var (
		mu     sync.Mutex // the handler runs on the server's goroutines
		seen   []byte
		called bool
	)
	srv := httptest.NewServer(MaxBody(limit, JSON, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		mu.Lock()
		called, seen = true, b
		mu.Unlock()
		if err != nil {
			http.Error(w, "downstream read failed: "+err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, "ok")
	})))
	t.Cleanup(srv.Close)

	tests := []struct {
		name       string
		size       int
		chunked    bool // hide the length, so the client streams the body
		wantStatus int
	}{
		{name: "small", size: 10, wantStatus: 200},
		{name: "exactly the limit", size: limit, wantStatus: 200},
		{name: "Content-Length over the limit", size: limit + 1, wantStatus: 413},
		{name: "chunked small", size: 10, chunked: true, wantStatus: 200},
		{name: "chunked exactly the limit", size: limit, chunked: true, wantStatus: 200},
		{name: "chunked one byte over", size: limit + 1, chunked: true, wantStatus: 413},
		{name: "chunked far over", size: 256 * 1024, chunked: true, wantStatus: 413},
		{name: "empty", size: 0, wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			called, seen = false, nil
			mu.Unlock()
			payload := strings.Repeat("x", tt.size)
			var body io.Reader = strings.NewReader(payload)
			if tt.chunked {
				body = io.MultiReader(body) // not a type the client can take a length from
			}
			req, err := http.NewRequest(http.MethodPost, srv.URL, body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.chunked && req.ContentLength != 0 {
				t.Fatalf("client would send Content-Length %d", req.ContentLength)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, got, tt.wantStatus)
			}
			mu.Lock()
			defer mu.Unlock()
			if tt.wantStatus == 413 {
				if called {
					t.Fatal("the next handler ran for a body over the limit")
				}
				if want := `{"error":"request body larger than 1024 bytes"}` + "\n"; string(got) != want {
					t.Fatalf("body %q, want %q", got, want)
				}
				return
			}
			if string(seen) != payload {
				t.Fatalf("next saw %d bytes, want %d", len(seen), len(payload))
			}
		})
	}
}

func TestMaxBodySkipsWebSocketUpgrade(t *testing.T) {
	called := false
	h := MaxBody(10, GraphQL, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }))
	r := httptest.NewRequest(http.MethodGet, "/graphql", strings.NewReader(strings.Repeat("x", 100)))
	r.Header.Set("Connection", "keep-alive, Upgrade")
	r.Header.Set("Upgrade", "websocket")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if !called {
		t.Fatal("a WebSocket upgrade did not reach the next handler")
	}
}
