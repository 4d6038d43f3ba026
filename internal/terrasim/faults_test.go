package terrasim_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terrasim"
)

// rawGet makes one GET with credentials on a fresh connection and reports the transport
// error instead of failing the test.
func rawGet(ctx context.Context, e *env, path string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+path, nil)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range creds() {
		req.Header.Set(k, v)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func (e *env) count(path string) int {
	n := 0
	for _, r := range e.emu.Requests() {
		if r.Path == path {
			n++
		}
	}
	return n
}

func TestFaultModes(t *testing.T) {
	const path = "/v2/integrations"
	t.Run("hang until the caller gives up", func(t *testing.T) {
		e := newEnv(t, terrasim.Config{})
		e.emu.Fail(path, terrasim.Fault{Hang: true})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _, err := rawGet(ctx, e, path)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("took %v", d)
		}
		if resp, _, err := rawGet(context.Background(), e, path); err != nil || resp.StatusCode != 200 {
			t.Errorf("after the fault: %v", err)
		}
		if n := e.count(path); n != 2 {
			t.Errorf("%d requests recorded, want 2", n)
		}
	})
	t.Run("hang ends with Close, without an answer", func(t *testing.T) {
		e := newEnv(t, terrasim.Config{})
		e.emu.Fail(path, terrasim.Fault{Hang: true})
		errc := make(chan error, 1)
		go func() {
			_, _, err := rawGet(context.Background(), e, path)
			errc <- err
		}()
		waitFor(t, "the request", func() bool { return e.count(path) == 1 })
		e.emu.Close()
		select {
		case err := <-errc:
			if err == nil {
				t.Error("a hung call got an answer")
			}
		case <-time.After(2 * time.Second):
			t.Fatal("the hung call outlived Close")
		}
	})
	t.Run("reset", func(t *testing.T) {
		e := newEnv(t, terrasim.Config{})
		e.emu.Fail(path, terrasim.Fault{Reset: true, Times: 2})
		for i := range 2 {
			if resp, _, err := rawGet(context.Background(), e, path); err == nil {
				t.Errorf("call %d: answered %d", i, resp.StatusCode)
			}
		}
		if resp, _, err := rawGet(context.Background(), e, path); err != nil || resp.StatusCode != 200 {
			t.Errorf("after the fault: %v", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		e := newEnv(t, terrasim.Config{})
		e.emu.Fail(path, terrasim.Fault{Garbage: true, Header: http.Header{"X-Terra-Trace": {"t1"}}})
		resp, b := e.call(t, "GET", path, "", creds())
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Terra-Trace") != "t1" {
			t.Errorf("status %d, headers %v", resp.StatusCode, resp.Header)
		}
		if json.Valid(b) || len(b) == 0 {
			t.Errorf("body is JSON: %q", b)
		}
	})
	t.Run("delay, then reset", func(t *testing.T) {
		e := newEnv(t, terrasim.Config{})
		e.emu.Fail(path, terrasim.Fault{Delay: 100 * time.Millisecond, Reset: true})
		start := time.Now()
		if _, _, err := rawGet(context.Background(), e, path); err == nil {
			t.Error("answered")
		}
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Errorf("reset after %v, Delay is 100ms", d)
		}
	})
}

func TestAdminFaultModes(t *testing.T) {
	e := newEnv(t, terrasim.Config{})
	post := func(body string, want int) {
		t.Helper()
		resp, b := e.call(t, "POST", "/_emulator/fail", body, creds())
		if resp.StatusCode != want {
			t.Fatalf("%s: status %d, want %d: %s", body, resp.StatusCode, want, b)
		}
	}
	post(`{"path":"/v2/integrations"}`, 400)
	post(`{"path":"/v2/integrations","garbage":true}`, 200)
	post(`{"path":"/v2/integrations","reset":true}`, 200)
	post(`{"path":"/v2/integrations","hang":true}`, 200)

	resp, b := e.call(t, "GET", "/v2/integrations", "", creds())
	if resp.StatusCode != 200 || json.Valid(b) {
		t.Errorf("garbage: %d %q", resp.StatusCode, b)
	}
	if _, _, err := rawGet(context.Background(), e, "/v2/integrations"); err == nil {
		t.Error("reset: answered")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := rawGet(ctx, e, "/v2/integrations"); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("hang: %v", err)
	}
}
