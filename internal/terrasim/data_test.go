package terrasim_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/terragate/terragate/internal/terrasim"
)

// dataEvents returns the received events of type typ, decoded, with their requests.
func (rc *receiver) dataEvents(typ string) ([]map[string]any, []received) {
	var evs []map[string]any
	var rs []received
	for _, r := range rc.requests() {
		var m map[string]any
		if json.Unmarshal(r.Body, &m) == nil && m["type"] == typ {
			evs = append(evs, m)
			rs = append(rs, r)
		}
	}
	return evs, rs
}

func TestDataRequestOneMonthArrivesAsOneEvent(t *testing.T) {
	rc := newReceiver(t)
	e := newEnv(t, terrasim.Config{WebhookURL: rc.srv.URL})
	u, err := e.emu.Connect("OURA", "ref-1")
	if err != nil {
		t.Fatal(err)
	}
	resp, b := e.call(t, http.MethodGet, "/v2/sleep?user_id="+u.UserID+"&start_date=2026-07-01&end_date=2026-07-10&to_webhook=true", "", creds())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	ans := decode(t, b)
	ref, _ := ans["reference"].(string)
	if ans["status"] != "success" || ans["type"] != "sleep" || ref == "" || ans["user"].(map[string]any)["user_id"] != u.UserID {
		t.Fatalf("answer %v", ans)
	}
	if _, ok := ans["data"]; ok {
		t.Errorf("a to_webhook answer carries data: %v", ans)
	}
	ev, r := rc.event("sleep")
	if !r.VerifyOK {
		t.Error("data event signature does not verify")
	}
	if got := r.Header.Get("terra-reference"); got != ref {
		t.Errorf("terra-reference %q, want %q", got, ref)
	}
	if r.Header.Get("X-Terra-Trace-Id") == "" {
		t.Error("no X-Terra-Trace-Id")
	}
	for _, f := range []string{"type", "user", "data", "version"} {
		if _, ok := ev[f]; !ok {
			t.Errorf("sleep event lacks %s", f)
		}
	}
	data, _ := ev["data"].([]any)
	if len(data) != 10 {
		t.Errorf("%d records, want one a day for 10 days", len(data))
	}
	md := data[0].(map[string]any)["metadata"].(map[string]any)
	if !strings.HasPrefix(md["start_time"].(string), "2026-07-01") {
		t.Errorf("first record starts %v", md["start_time"])
	}
	if evs, _ := rc.dataEvents("large_request_processing"); len(evs) != 0 {
		t.Error("a one-month request was announced as large")
	}
}

func TestDataRequestOverAMonthArrivesInChunks(t *testing.T) {
	rc := newReceiver(t)
	e := newEnv(t, terrasim.Config{WebhookURL: rc.srv.URL})
	u, _ := e.emu.Connect("GARMIN", "")
	// 15 Jan to 10 Mar: three calendar months, three chunks (unix seconds work too).
	resp, b := e.call(t, http.MethodGet, "/api/v2/activity?user_id="+u.UserID+"&start_date=1768435200&end_date=2026-03-10", "", creds())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	ref := decode(t, b)["reference"].(string)
	waitFor(t, "three chunks", func() bool { evs, _ := rc.dataEvents("activity"); return len(evs) == 3 })
	proc, _ := rc.event("large_request_processing")
	send, _ := rc.event("large_request_sending")
	if proc["reference"] != ref || proc["status"] != "processing" || send["reference"] != ref {
		t.Errorf("announcements %v %v", proc, send)
	}
	if send["expected_payloads"] != float64(3) {
		t.Errorf("expected_payloads %v, want 3", send["expected_payloads"])
	}
	evs, rs := rc.dataEvents("activity")
	var traces []string
	days := 0
	for i, r := range rs {
		if r.Header.Get("terra-reference") != ref {
			t.Errorf("chunk with terra-reference %q", r.Header.Get("terra-reference"))
		}
		traces = append(traces, r.Header.Get("X-Terra-Trace-Id"))
		days += len(evs[i]["data"].([]any))
	}
	if days != 17+28+10 {
		t.Errorf("%d records over the chunks, want 55", days)
	}
	slices.Sort(traces)
	base, _, _ := strings.Cut(traces[0], ":chunk:")
	for n, tr := range traces {
		if want := fmt.Sprintf("%s:chunk:%d", base, n+1); tr != want {
			t.Errorf("trace id %q, want %q", tr, want)
		}
	}
}

func TestDataRequestLimits(t *testing.T) {
	e := newEnv(t, terrasim.Config{})
	u, _ := e.emu.Connect("OURA", "")
	get := func(path string) (*http.Response, map[string]any) {
		resp, b := e.call(t, http.MethodGet, path, "", creds())
		return resp, decode(t, b)
	}
	resp, body := get("/v2/daily?user_id=" + u.UserID + "&start_date=2020-01-01&end_date=2025-12-31")
	if resp.StatusCode != http.StatusBadRequest || body["status"] != "error" || body["message"] == "" {
		t.Errorf("over 1,825 days: %d %v", resp.StatusCode, body)
	}
	resp, body = get("/api/v2/daily?user_id=" + u.UserID + "&start_date=2020-01-01&end_date=2025-12-31")
	if resp.StatusCode != http.StatusBadRequest || body["detail"] == "" {
		t.Errorf("over 1,825 days on the 2026 base: %d %v", resp.StatusCode, body)
	}
	if resp, _ := get("/v2/daily?user_id=nobody&start_date=2026-01-01"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown user: %d", resp.StatusCode)
	}
	if resp, _ := get("/v2/daily?user_id=" + u.UserID + "&start_date=yesterday"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad date: %d", resp.StatusCode)
	}
	// 1,825 days three times is 5,475 requested days; a fourth goes past 6,000 an hour.
	for i := range 3 {
		if resp, body := get("/v2/body?user_id=" + u.UserID + "&start_date=2021-01-01&end_date=2025-12-30"); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %v", i, resp.StatusCode, body)
		}
	}
	resp, body = get("/v2/body?user_id=" + u.UserID + "&start_date=2021-01-01&end_date=2025-12-30")
	if resp.StatusCode != http.StatusTooManyRequests || body["detail"] != "rate limit exceeded" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("past the hourly budget: %d %v %v", resp.StatusCode, body, resp.Header)
	}
	if resp.Header.Get("X-Terra-RateLimit-Limit") == "" {
		t.Errorf("429 without X-Terra-RateLimit-* headers: %v", resp.Header)
	}
}

func TestDataRequestSynchronous(t *testing.T) {
	e := newEnv(t, terrasim.Config{})
	u, _ := e.emu.Connect("OURA", "")
	resp, b := e.call(t, http.MethodGet, "/v2/daily?user_id="+u.UserID+"&start_date=2026-07-01&end_date=2026-07-03&to_webhook=false", "", creds())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	ans := decode(t, b)
	if data, _ := ans["data"].([]any); len(data) != 3 || ans["type"] != "daily" {
		t.Errorf("synchronous answer %v", ans)
	}
	for _, d := range e.emu.Deliveries() {
		if d.Type == "daily" {
			t.Error("a synchronous request also sent a webhook")
		}
	}
}

func TestBackfillControl(t *testing.T) {
	rc := newReceiver(t)
	e := newEnv(t, terrasim.Config{WebhookURL: rc.srv.URL})
	u, _ := e.emu.Connect("OURA", "")
	resp, b := e.call(t, http.MethodPost, terrasim.AdminPrefix+"/backfill",
		`{"user_id":"`+u.UserID+`","type":"daily","days":3}`, creds())
	if resp.StatusCode != http.StatusOK || decode(t, b)["reference"] == "" {
		t.Fatalf("control: %d %s", resp.StatusCode, b)
	}
	ev, _ := rc.event("daily")
	if n := len(ev["data"].([]any)); n < 3 {
		t.Errorf("%d daily records for 3 days", n)
	}
	resp, _ = e.call(t, http.MethodPost, terrasim.AdminPrefix+"/backfill", `{"user_id":"nobody","type":"daily","days":3}`, creds())
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown user: %d", resp.StatusCode)
	}
	if _, err := e.emu.Backfill(u.UserID, "steps", 3); err == nil {
		t.Error("an unknown type was accepted")
	}
}
