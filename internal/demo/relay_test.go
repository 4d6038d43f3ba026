package demo_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/demo"
	"github.com/terragate/terragate/internal/stdwebhook"
)

const relaySecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

// The receiver verifies each delivery the Standard Webhooks way and lists what it got.
func TestRelayReceiver(t *testing.T) {
	rc, err := demo.NewRelayReceiver(relaySecret)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	s, _ := stdwebhook.ParseSecret(relaySecret)
	post := func(id string, body []byte, sign bool) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		if sign {
			s.SetHeaders(req.Header, id, time.Now(), body)
		} else {
			req.Header.Set(stdwebhook.HeaderID, id)
		}
		req.Header.Set("terragate-event-type", "sleep")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("msg_good", []byte(`{"type":"sleep","data":["MARKER-health"]}`), true); code/100 != 2 {
		t.Fatalf("signed delivery: %d", code)
	}
	if code := post("msg_forged", []byte(`{"type":"sleep"}`), false); code != http.StatusUnauthorized {
		t.Errorf("unsigned delivery: %d", code)
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "msg_good") || !strings.Contains(string(page), "sleep") {
		t.Errorf("page %d:\n%s", resp.StatusCode, page)
	}
	if strings.Contains(string(page), "msg_forged") {
		t.Error("a forged delivery is listed")
	}
	if strings.Contains(string(page), "MARKER-health") {
		t.Error("the page shows the event's body")
	}
}
