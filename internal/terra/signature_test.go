package terra_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terra"
)

var (
	secret = []byte("whsec-0123456789")
	body   = []byte(`{"type":"auth","status":"success","user":{"user_id":"u1","provider":"OURA"}}`)
	now    = time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC)
)

func TestSign(t *testing.T) {
	// Expected value computed with an independent HMAC-SHA256 implementation over
	// "1784548800." + body.
	want := "t=1784548800,v1=2b6a1d966836155cdb5b3002dbcaddc850f1f40ecbbe79a1885845ab00ca25dc"
	if got := terra.Sign(secret, now, body); got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}

func TestParseSignatureHeader(t *testing.T) {
	v1 := strings.Repeat("ab", 32)
	v1b := strings.Repeat("cd", 32)
	cases := []struct {
		name   string
		header string
		wantTS int64
		wantN  int
		ok     bool
	}{
		{"plain", "t=1700000000,v1=" + v1, 1700000000, 1, true},
		{"spaces", " t = 1700000000 , v1 = " + v1 + " ", 1700000000, 1, true},
		{"several v1", "t=1,v1=" + v1 + ",v1=" + v1b, 1, 2, true},
		{"other schemes ignored", "t=1,v0=zz-not-hex,v1=" + v1 + ",v2=whatever", 1, 1, true},
		{"trailing comma", "t=1,v1=" + v1 + ",", 1, 1, true},
		{"upper-case hex", "t=1,v1=" + strings.ToUpper(v1), 1, 1, true},
		{"no t", "v1=" + v1, 0, 0, false},
		{"non-numeric t", "t=abc,v1=" + v1, 0, 0, false},
		{"negative t", "t=-5,v1=" + v1, 0, 0, false},
		{"two t", "t=1,t=2,v1=" + v1, 0, 0, false},
		{"no v1", "t=1,v0=" + v1, 0, 0, false},
		{"bad hex", "t=1,v1=" + strings.Repeat("zz", 32), 0, 0, false},
		{"short v1", "t=1,v1=abcd", 0, 0, false},
		{"malformed v1 beside a good one", "t=1,v1=abcd,v1=" + strings.Repeat("zz", 32) + ",v1=" + v1, 1, 1, true},
		{"no equals", "t=1,v1", 0, 0, false},
		{"empty", "", 0, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts, sigs, err := terra.ParseSignatureHeader(c.header)
			if c.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, c.ok)
			}
			if err != nil {
				if !errors.Is(err, terra.ErrBadSignature) {
					t.Errorf("error %v does not wrap ErrBadSignature", err)
				}
				return
			}
			if ts != c.wantTS || len(sigs) != c.wantN {
				t.Errorf("got t=%d, %d v1", ts, len(sigs))
			}
		})
	}
}

func TestVerifySignature(t *testing.T) {
	valid := terra.Sign(secret, now, body)
	at := func(d time.Duration) string { return terra.Sign(secret, now.Add(d), body) }
	wrongV1 := "v1=" + strings.Repeat("00", 32)
	_, v1, _ := strings.Cut(valid, ",")
	ts := strconv.FormatInt(now.Unix(), 10)

	cases := []struct {
		name   string
		header http.Header
		body   []byte
		secret []byte
		want   error
	}{
		{"valid", http.Header{"Terra-Signature": {valid}}, body, secret, nil},
		{"X-Terra-Signature", http.Header{"X-Terra-Signature": {valid}}, body, secret, nil},
		{"lower-case key in the map", http.Header{"terra-signature": {valid}}, body, secret, nil},
		{"odd case key in the map", http.Header{"x-TERRA-signature": {valid}}, body, secret, nil},
		{"several v1, one valid", http.Header{"Terra-Signature": {"t=" + ts + "," + wrongV1 + "," + v1}}, body, secret, nil},
		{"other schemes ignored", http.Header{"Terra-Signature": {"t=" + ts + ",v0=deadbeef," + v1}}, body, secret, nil},
		{"several header values", http.Header{"Terra-Signature": {"garbage", valid}}, body, secret, nil},
		{"both headers, one valid", http.Header{"Terra-Signature": {"t=" + ts + "," + wrongV1}, "X-Terra-Signature": {valid}}, body, secret, nil},
		{"300s old accepted", http.Header{"Terra-Signature": {at(-300 * time.Second)}}, body, secret, nil},
		{"300s ahead accepted", http.Header{"Terra-Signature": {at(300 * time.Second)}}, body, secret, nil},
		{"301s old", http.Header{"Terra-Signature": {at(-301 * time.Second)}}, body, secret, terra.ErrStaleSignature},
		{"301s ahead", http.Header{"Terra-Signature": {at(301 * time.Second)}}, body, secret, terra.ErrStaleSignature},
		{"no header", http.Header{"Content-Type": {"application/json"}}, body, secret, terra.ErrNoSignature},
		{"wrong secret", http.Header{"Terra-Signature": {valid}}, body, []byte("other"), terra.ErrBadSignature},
		{"tampered body", http.Header{"Terra-Signature": {valid}}, append([]byte(nil), strings.Replace(string(body), "u1", "u2", 1)...), secret, terra.ErrBadSignature},
		{"body re-encoded", http.Header{"Terra-Signature": {valid}}, append(append([]byte(nil), body...), '\n'), secret, terra.ErrBadSignature},
		{"malformed header", http.Header{"Terra-Signature": {"v1=abc"}}, body, secret, terra.ErrBadSignature},
		{"timestamp swapped", http.Header{"Terra-Signature": {"t=" + strconv.FormatInt(now.Unix()+1, 10) + "," + v1}}, body, secret, terra.ErrBadSignature},
		{"empty secret", http.Header{"Terra-Signature": {terra.Sign(nil, now, body)}}, body, nil, terra.ErrBadSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			signedAt, err := terra.VerifySignature(c.secret, c.header, c.body, now)
			if c.want == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if signedAt.IsZero() || signedAt.Sub(now).Abs() > terra.SignatureTolerance {
					t.Errorf("signedAt %v", signedAt)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Errorf("err = %v, want %v", err, c.want)
			}
			for _, other := range []error{terra.ErrNoSignature, terra.ErrBadSignature, terra.ErrStaleSignature} {
				if other != c.want && errors.Is(err, other) {
					t.Errorf("err %v also matches %v", err, other)
				}
			}
		})
	}
}

// BenchmarkVerifySignature verifies a connection event's signature as the webhook handler
// does for every delivery: the header among a request's usual ones.
func BenchmarkVerifySignature(b *testing.B) {
	h := http.Header{
		"Content-Type":     {"application/json"},
		"User-Agent":       {"Terra/1.0"},
		"X-Terra-Trace-Id": {"trace-0123456789"},
		"Terra-Signature":  {terra.Sign(secret, now, body)},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := terra.VerifySignature(secret, h, body, now); err != nil {
			b.Fatal(err)
		}
	}
}
