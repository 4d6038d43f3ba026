package limit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// slowClient sends a request's headers and the first part of its body over a raw
// connection, then whatever send does, and returns the server's answer.
func slowClient(t *testing.T, url, path string, length int, send func(c net.Conn)) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The test's own limit: far beyond the server's, so only a server that never cuts
	// the body makes it fail.
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", path, length)
	send(c)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer from the server: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// bodyServer serves h behind IdleBody, as the gateway's server does, and records what
// reading the body returned.
func bodyServer(t *testing.T, idle time.Duration, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(IdleBody(idle, h))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestIdleBodyCutsABodyThatStops(t *testing.T) {
	readErr := make(chan error, 1)
	url := bodyServer(t, 200*time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
		if err != nil {
			RequestTimeout(w, r, JSON)
		}
	}))
	resp := slowClient(t, url, "/webhooks/terra", 1000, func(net.Conn) {}) // then nothing more
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	if err := <-readErr; err == nil || !strings.Contains(err.Error(), ErrBodyTimeout.Error()) {
		t.Fatalf("read error %v, want ErrBodyTimeout", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"error"`) {
		t.Errorf("body %s, want a JSON error", body)
	}
}

func TestIdleBodyLetsASteadyBodyThrough(t *testing.T) {
	url := bodyServer(t, 300*time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			RequestTimeout(w, r, JSON)
			return
		}
		fmt.Fprintf(w, "%d", len(b))
	}))
	// Ten pieces, each well within the idle limit, together longer than it.
	resp := slowClient(t, url, "/", 11, func(c net.Conn) {
		for range 10 {
			time.Sleep(50 * time.Millisecond) // pacing the sender, not waiting for the server
			c.Write([]byte("x"))
		}
	})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "11" {
		t.Fatalf("status %d body %q, want 200 and all 11 bytes", resp.StatusCode, body)
	}
}

func TestBodyDeadlineCutsATrickle(t *testing.T) {
	url := bodyServer(t, 5*time.Second, BodyDeadline(300*time.Millisecond,
		MaxBody(1<<20, GraphQL, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "reached")
		}))))
	// A byte every 50 ms never trips the idle limit; the total must.
	stop := make(chan struct{})
	resp := slowClient(t, url, "/graphql", 1000, func(c net.Conn) {
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
	})
	close(stop)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), CodeRequestTimeout) {
		t.Fatalf("status %d body %s, want 408 %s", resp.StatusCode, body, CodeRequestTimeout)
	}
}

// A deadline left on the connection after the body would cancel a slow handler's context
// through net/http's background read of the connection.
func TestIdleBodyLeavesNoDeadlineBehind(t *testing.T) {
	url := bodyServer(t, 100*time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			RequestTimeout(w, r, JSON)
			return
		}
		select {
		case <-r.Context().Done():
			io.WriteString(w, "cancelled")
		case <-time.After(400 * time.Millisecond): // longer than the idle limit
			io.WriteString(w, "finished")
		}
	}))
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "finished" {
		t.Fatalf("handler saw %q, want finished", body)
	}
}
