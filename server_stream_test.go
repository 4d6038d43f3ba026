package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// largeActivity is an activity event of about size bytes with varied samples, as a month of
// heart rate is.
func largeActivity(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"type":"activity","user":{"user_id":"u-big","provider":"GARMIN","reference_id":"alice"},"data":[{"heart_rate_data":{"detailed":{"hr_samples":[`)
	for i := 0; b.Len() < size-64; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"timestamp":"2026-07-%02dT%02d:%02d:%02d+00:00","bpm":%d}`, 1+(i/86400)%28, (i/3600)%24, (i/60)%60, i%60, 50+(i*7919)%97)
	}
	b.WriteString(`]}}}],"version":"2022-03-16"}`)
	return b.Bytes()
}

// A 30 MiB chunk is accepted and reaches two backends byte for byte, signed the Standard
// Webhooks way; a body over WEBHOOK_MAX_BYTES gets 413 with a JSON answer.
func TestLargeBodyRelayedByteForByte(t *testing.T) {
	type got struct {
		dest string
		sum  [sha256.Size]byte
		n    int
		err  error
	}
	gotc := make(chan got, 4)
	wh, err := standardwebhooks.NewWebhook(relayTestSecret)
	if err != nil {
		t.Fatal(err)
	}
	receiver := func(name string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err == nil {
				err = wh.Verify(body, r.Header)
			}
			gotc <- got{dest: name, sum: sha256.Sum256(body), n: len(body), err: err}
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	a, b := receiver("a"), receiver("b")
	dbURL := testDatabaseURL(t)
	if strings.HasPrefix(dbURL, "sqlite:") {
		dbURL = "sqlite:" + filepath.Join(t.TempDir(), "stream.db")
	}
	g := startGateway(t, withoutWebhooks(),
		withEnv("DATABASE_URL", dbURL),
		withEnv("WEBHOOK_MAX_BYTES", fmt.Sprint(40<<20)),
		withEnv("RELAY_DESTINATIONS", `[{"name":"a","url":"`+a.URL+`","events":["activity"],"secret":"`+relayTestSecret+`"},`+
			`{"name":"b","url":"`+b.URL+`","secret":"`+relayTestSecret+`"}]`))

	body := largeActivity(30 << 20)
	h := signedHeader(body, time.Now(), "big:chunk:1")
	h.Set("terra-reference", "ref-big")
	if resp, answer := g.postWebhook(body, h); resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook: %d %s", resp.StatusCode, answer)
	}
	want := sha256.Sum256(body)
	seen := map[string]bool{}
	for range 2 {
		select {
		case r := <-gotc:
			if r.sum != want || r.err != nil {
				t.Errorf("%s got %d bytes (want %d), signature: %v", r.dest, r.n, len(body), r.err)
			}
			seen[r.dest] = true
		case <-time.After(30 * time.Second):
			t.Fatal("a backend got nothing")
		}
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("backends reached: %v", seen)
	}

	over := largeActivity(41 << 20)
	resp, answer := g.postWebhook(over, signedHeader(over, time.Now(), "big:chunk:2"))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(answer, `"error"`) {
		t.Errorf("over the limit: %d %s; want 413 with a JSON error", resp.StatusCode, answer)
	}
}
