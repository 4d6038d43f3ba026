package stdwebhook_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/terragate/terragate/internal/stdwebhook"
)

// The spec's own test vector, as the official libraries test it.
func TestSignKnownVector(t *testing.T) {
	s, err := stdwebhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := s.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("Sign = %q; want %q", got, want)
	}
}

// What the official Go library verifies, byte for byte, with its own timestamp check.
func TestHeadersVerifyWithOfficialLibrary(t *testing.T) {
	const secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD" // 24 bytes
	s, err := stdwebhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("{\"type\":\"activity\",\n \"data\":[{\"x\":1.50}]}  ")
	h := http.Header{}
	s.SetHeaders(h, "msg_abc", time.Now(), body)
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(body, h); err != nil {
		t.Fatalf("official library refuses our headers: %v (%v)", err, h)
	}
	tampered := append([]byte{}, body...)
	tampered[len(tampered)-1] = 'x'
	if err := wh.Verify(tampered, h); err == nil {
		t.Error("official library accepts a changed body")
	}
}

func TestParseSecret(t *testing.T) {
	for name, tc := range map[string]struct {
		in string
		ok bool
	}{
		"24 bytes":    {"whsec_" + strings.Repeat("A", 32), true},
		"64 bytes":    {"whsec_" + strings.Repeat("A", 86) + "==", true},
		"no prefix":   {strings.Repeat("A", 32), false},
		"23 bytes":    {"whsec_" + strings.Repeat("A", 30) + "A=", false},
		"65 bytes":    {"whsec_" + strings.Repeat("A", 87) + "=", false},
		"not base64":  {"whsec_" + strings.Repeat("!", 32), false},
		"empty":       {"", false},
		"prefix only": {"whsec_", false},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := stdwebhook.ParseSecret(tc.in)
			if (err == nil) != tc.ok {
				t.Errorf("ParseSecret: err = %v; want ok %v", err, tc.ok)
			}
			if err != nil && len(tc.in) > 8 && strings.Contains(err.Error(), tc.in[6:]) {
				t.Errorf("error %q repeats the secret", err)
			}
		})
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	s, err := stdwebhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{s.String(), s.LogValue().String()} {
		if strings.Contains(out, "MfKQ") {
			t.Errorf("secret printed: %q", out)
		}
	}
}

// SignReader, over a body streamed by, signs as Sign does over the body in memory.
func TestSignReaderMatchesSign(t *testing.T) {
	s, err := stdwebhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte(`{"x":1}`), 50_000)
	at := time.Unix(1751371200, 0)
	got, err := s.SignReader("msg_1", at, bytes.NewReader(body))
	if err != nil || got != s.Sign("msg_1", at, body) {
		t.Errorf("SignReader = %q, %v; want %q", got, err, s.Sign("msg_1", at, body))
	}
}
