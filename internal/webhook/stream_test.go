package webhook_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/spool"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/sqlite"
	"github.com/terragate/terragate/internal/terra"
	"github.com/terragate/terragate/internal/webhook"
)

// dataBody is an activity event of about size bytes, with samples that vary as real ones do
// (so that it compresses as real data does, not to nothing).
func dataBody(size int, seed int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"type":"activity","user":{"user_id":"u-%d","provider":"GARMIN","reference_id":"alice"},"data":[{"heart_rate_data":{"detailed":{"hr_samples":[`, seed)
	for i := 0; b.Len() < size-64; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"timestamp":"2026-07-01T%02d:%02d:%02d+00:00","bpm":%d}`, (i/3600)%24, (i/60)%60, i%60, 50+(i*7919+seed)%97)
	}
	b.WriteString(`]}}}],"version":"2022-03-16"}`)
	return b.Bytes()
}

func newStreamEnv(t *testing.T, r routes, maxBytes int64) (store.Store, *httptest.Server) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hooks.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := webhook.New([]string{"other-secret", secret}, connection.NewMapping(nil, nil).DecodeEvent, st, nil, slog.New(slog.DiscardHandler),
		webhook.WithRelay(r), webhook.WithMaxBytes(maxBytes), webhook.WithSpoolDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return st, srv
}

// postSigned posts body signed with key, with the headers given, and returns the status and
// the answer.
func postSigned(t *testing.T, url string, key string, body []byte, header map[string]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("terra-signature", terra.Sign([]byte(key), time.Now(), body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, answer
}

// storedBody reads a relay event's body back from the store, piece by piece.
func storedBody(t *testing.T, st store.Store, eventID int64) []byte {
	t.Helper()
	ctx := context.Background()
	n, err := st.RelayPieces(ctx, eventID)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		b, err := st.RelayBody(ctx, eventID)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	got, err := io.ReadAll(spool.NewReader(n, func(seq int) ([]byte, error) { return st.RelayPiece(ctx, eventID, seq) }))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// A body far over the old 1 MiB cap is accepted, kept in pieces and read back byte for byte;
// the inbox keeps none of it.
func TestLargeBodyStoredInPieces(t *testing.T) {
	st, srv := newStreamEnv(t, routes{"activity": {"a", "b"}}, 8<<20)
	body := dataBody(5<<20, 1)
	if code, answer := postSigned(t, srv.URL, secret, body, map[string]string{"X-Terra-Trace-Id": "big-1", "terra-reference": "ref-1"}); code != 200 {
		t.Fatalf("status %d %s", code, answer)
	}
	log := relayLog(t, st)
	if len(log) != 2 {
		t.Fatalf("relay log = %d deliveries; want a and b", len(log))
	}
	if log[0].EventID != log[1].EventID || log[0].Reference != "ref-1" || log[0].EventType != "activity" {
		t.Errorf("deliveries = %+v", log)
	}
	if got := storedBody(t, st, log[0].EventID); sha256.Sum256(got) != sha256.Sum256(body) {
		t.Errorf("stored body: %d bytes, not Terra's %d byte for byte", len(got), len(body))
	}
	if inbox := inboxRows(t, st); len(inbox) != 1 || len(inbox[0].Body) != 0 || inbox[0].Type != "activity" {
		t.Errorf("inbox = %d rows; want one data event without its body", len(inbox))
	}
}

// Over WEBHOOK_MAX_BYTES: 413 with a JSON answer, and nothing stored.
func TestBodyOverMaxBytesRefused(t *testing.T) {
	st, srv := newStreamEnv(t, routes{"activity": {"a"}}, 2<<20)
	code, answer := postSigned(t, srv.URL, secret, dataBody(3<<20, 2), nil)
	var v struct{ Error string }
	if code != http.StatusRequestEntityTooLarge || json.Unmarshal(answer, &v) != nil || v.Error == "" {
		t.Errorf("answer = %d %s; want 413 with a JSON error", code, answer)
	}
	if len(relayLog(t, st)) != 0 || len(inboxRows(t, st)) != 0 {
		t.Error("something was stored")
	}
}

// A large body with a bad signature stores nothing.
func TestLargeBodyBadSignatureStoresNothing(t *testing.T) {
	st, srv := newStreamEnv(t, routes{"activity": {"a"}}, 8<<20)
	if code, answer := postSigned(t, srv.URL, "not-the-secret", dataBody(3<<20, 3), nil); code != http.StatusUnauthorized {
		t.Errorf("answer = %d %s; want 401", code, answer)
	}
	if len(relayLog(t, st)) != 0 || len(inboxRows(t, st)) != 0 {
		t.Error("something was stored")
	}
}

// Duplicates of a large body, by trace id or (without one) by the body's hash, relay once;
// chunks sharing terra-reference are distinct events.
func TestLargeBodyDuplicatesAndChunks(t *testing.T) {
	st, srv := newStreamEnv(t, routes{"activity": {"a"}}, 8<<20)
	one, two := dataBody(2<<20, 4), dataBody(2<<20, 5)
	posts := []struct {
		body   []byte
		header map[string]string
	}{
		{one, map[string]string{"X-Terra-Trace-Id": "t-1:chunk:1", "terra-reference": "ref-7"}},
		{one, map[string]string{"X-Terra-Trace-Id": "t-1:chunk:1", "terra-reference": "ref-7"}}, // Terra's retry
		{two, map[string]string{"X-Terra-Trace-Id": "t-1:chunk:2", "terra-reference": "ref-7"}}, // the next chunk
		{two, nil}, // no trace id: the body's hash
		{two, nil},
	}
	for i, p := range posts {
		if code, answer := postSigned(t, srv.URL, secret, p.body, p.header); code != 200 {
			t.Fatalf("post %d: %d %s", i, code, answer)
		}
	}
	log := relayLog(t, st)
	if len(log) != 3 {
		t.Fatalf("relay log = %d deliveries; want chunk 1, chunk 2 and the untraced body once each", len(log))
	}
	seen := map[string]bool{}
	for _, d := range log {
		seen[d.TraceID] = true
		if got := storedBody(t, st, d.EventID); !bytes.Equal(got, map[bool][]byte{true: one, false: two}[d.TraceID == "t-1:chunk:1"]) {
			t.Errorf("delivery %d: body differs", d.ID)
		}
	}
	if !seen["t-1:chunk:1"] || !seen["t-1:chunk:2"] || !seen[""] {
		t.Errorf("trace ids = %v", seen)
	}
}

// Without a destination for its type, nothing of a large body is kept.
func TestLargeBodyWithoutDestinationKeepsNothing(t *testing.T) {
	st, srv := newStreamEnv(t, routes{"sleep": {"a"}}, 8<<20)
	if code, answer := postSigned(t, srv.URL, secret, dataBody(3<<20, 6), nil); code != 200 {
		t.Fatalf("status %d %s", code, answer)
	}
	if len(relayLog(t, st)) != 0 {
		t.Error("enqueued without a destination")
	}
	if inbox := inboxRows(t, st); len(inbox) != 1 || len(inbox[0].Body) != 0 {
		t.Errorf("inbox = %d rows; want one without body", len(inbox))
	}
}

// A body over the limit without a Content-Length (chunked) is cut while it is read: 413,
// and nothing stored.
func TestChunkedBodyOverMaxBytesRefused(t *testing.T) {
	st, srv := newStreamEnv(t, routes{"activity": {"a"}}, 2<<20)
	body := dataBody(3<<20, 7)
	req, _ := http.NewRequest(http.MethodPost, srv.URL, io.MultiReader(bytes.NewReader(body))) // no length known
	req.Header.Set("terra-signature", terra.Sign([]byte(secret), time.Now(), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("answer = %d %s; want 413 JSON", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if len(relayLog(t, st)) != 0 || len(inboxRows(t, st)) != 0 {
		t.Error("something was stored")
	}
}
