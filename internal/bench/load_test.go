package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	var l []time.Duration
	for i := 1; i <= 100; i++ {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	s := Stats{Latencies: l}
	for q, want := range map[float64]time.Duration{.5: 50 * time.Millisecond, .99: 99 * time.Millisecond, 1: 100 * time.Millisecond, 0: time.Millisecond} {
		if got := s.Quantile(q); got != want {
			t.Errorf("Quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if (Stats{}).Quantile(.5) != 0 {
		t.Error("no latencies must give 0")
	}
}

// TestOpenCountsFromDueTime stalls the system once and checks the requests that came due
// during the stall carry it in their latencies, as they would for a real client: a closed
// loop would have sent none of them and hidden the stall (coordinated omission).
func TestOpenCountsFromDueTime(t *testing.T) {
	var mu sync.Mutex
	stalled := false
	stall := 200 * time.Millisecond
	op := func(ctx context.Context, i int) error {
		mu.Lock()
		first := !stalled
		stalled = true
		if first {
			// One slot in flight only: everything behind this request waits for it.
			time.Sleep(stall)
		}
		mu.Unlock()
		return nil
	}
	var next atomic.Int64
	s := Open(context.Background(), 100, 1, 0, 500*time.Millisecond, &next, op)
	if s.Requests < 45 || s.Requests > 51 {
		t.Errorf("%d requests measured at 100/s for 0.5 s", s.Requests)
	}
	// Requests due every 10 ms during a 200 ms stall: about 20 of them waited, the first
	// of them for nearly all of it.
	if s.Quantile(1) < stall-20*time.Millisecond {
		t.Errorf("worst latency %v, want about the %v stall", s.Quantile(1), stall)
	}
	waited := 0
	for _, l := range s.Latencies {
		if l > 50*time.Millisecond {
			waited++
		}
	}
	if waited < 10 {
		t.Errorf("%d requests show the stall, want the ~15 that came due during it", waited)
	}
	// The wait for the one slot is the server's doing, not the generator's: it must not
	// count as sending late.
	if len(s.Late) != s.Requests {
		t.Errorf("%d sending delays for %d requests", len(s.Late), s.Requests)
	}
	if late := s.LateQuantile(.9); late > 20*time.Millisecond {
		t.Errorf("sent late by %v at p90: the wait for a free slot was counted", late)
	}
}

// TestOpenRateIsWhatWasServed offers twice what one slot can serve: the rate reported is
// the one served, not the one offered.
func TestOpenRateIsWhatWasServed(t *testing.T) {
	op := func(ctx context.Context, i int) error {
		time.Sleep(20 * time.Millisecond) // 50/s at most, one at a time
		return nil
	}
	var next atomic.Int64
	s := Open(context.Background(), 100, 1, 0, 500*time.Millisecond, &next, op)
	if r := s.PerSecond(); r > 60 {
		t.Errorf("%.0f/s served with a capacity of 50/s (100/s offered)", r)
	}
}

func TestClosedKeepsInFlightAndCountsErrors(t *testing.T) {
	var inFlight, peak atomic.Int64
	boom := errors.New("boom")
	op := func(ctx context.Context, i int) error {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		inFlight.Add(-1)
		if i%10 == 0 {
			return boom
		}
		return nil
	}
	var next atomic.Int64
	s := Closed(context.Background(), 8, 20*time.Millisecond, 200*time.Millisecond, &next, op)
	if peak.Load() != 8 {
		t.Errorf("peak in flight %d, want 8", peak.Load())
	}
	// 8 workers, 5 ms each, 200 ms: at most about 320 requests (fewer on a busy machine),
	// a tenth of them failing.
	if s.Requests < 40 || s.Requests > 340 {
		t.Errorf("%d requests measured", s.Requests)
	}
	if s.Errors < s.Requests/20 || s.Errors > s.Requests/5 || !errors.Is(s.FirstError, boom) {
		t.Errorf("%d errors of %d (first %v)", s.Errors, s.Requests, s.FirstError)
	}
	if got := s.PerSecond(); got < 150 || got > 1700 {
		t.Errorf("%.0f successful requests per second", got)
	}
	if int(next.Load()) < s.Requests {
		t.Errorf("request numbers %d below the %d measured", next.Load(), s.Requests)
	}
}

func TestActivityIsValidJSONOfTheSizeAsked(t *testing.T) {
	a, b := Activity(1, relayEventSize), Activity(2, relayEventSize)
	for _, body := range [][]byte{a, b} {
		if !json.Valid(body) {
			t.Fatalf("not JSON: %s", body)
		}
		if len(body) < relayEventSize-100 || len(body) > relayEventSize+100 {
			t.Errorf("%d bytes, want about %d", len(body), relayEventSize)
		}
	}
	if bytes.Equal(a, b) {
		t.Error("two events with the same body")
	}
}

// TestReceiver checks what the relay scenarios read from it: first answers by trace id,
// repeats apart, 503s while down, and requests held until released.
func TestReceiver(t *testing.T) {
	rc, err := StartReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	post := func(trace string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, rc.URL, strings.NewReader("{}"))
		req.Header.Set("X-Terra-Trace-Id", trace)
		req.Header.Set("Webhook-Id", "msg_1")
		req.Header.Set("Webhook-Signature", "v1,x")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("a"); code != http.StatusNoContent {
		t.Fatalf("answered %d", code)
	}
	post("a")
	rc.Down(true)
	if code := post("b"); code != http.StatusServiceUnavailable {
		t.Fatalf("answered %d while down", code)
	}
	rc.Down(false)
	rc.Hold()
	done := make(chan int)
	go func() { done <- post("c") }()
	select {
	case <-done:
		t.Fatal("answered while held")
	case <-time.After(50 * time.Millisecond):
	}
	rc.Release()
	if code := <-done; code != http.StatusNoContent {
		t.Fatalf("answered %d after the release", code)
	}
	if n, repeats, bad := rc.Count(); n != 2 || repeats != 1 || bad != 0 || rc.Refused() != 1 {
		t.Errorf("%d distinct, %d repeats, %d bad, %d refused; want 2, 1, 0, 1", n, repeats, bad, rc.Refused())
	}
	if _, ok := rc.Answered("b"); ok {
		t.Error("an event answered 503 counts as arrived")
	}
}
