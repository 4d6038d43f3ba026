package terra_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terra"
)

func FuzzParseSignatureHeader(f *testing.F) {
	for _, s := range []string{
		terra.Sign(secret, now, body),
		"t=1700000000,v1=" + strings.Repeat("ab", 32) + ",v1=" + strings.Repeat("cd", 32),
		" t=1700000000 , v0=abc , v1=" + strings.Repeat("0f", 32),
		"t=,v1=",
		"v1=" + strings.Repeat("ab", 32),
		"t=99999999999999999999,v1=00",
	} {
		f.Add(s, []byte(`{"type":"auth"}`), int64(1700000000))
	}
	f.Fuzz(func(t *testing.T, header string, payload []byte, unix int64) {
		// Arbitrary input never panics; errors are always ErrBadSignature.
		ts, sigs, err := terra.ParseSignatureHeader(header)
		if err != nil {
			if !errors.Is(err, terra.ErrBadSignature) {
				t.Fatalf("error %v does not wrap ErrBadSignature", err)
			}
		} else if ts < 0 || len(sigs) == 0 {
			t.Fatalf("accepted t=%d with %d signatures", ts, len(sigs))
		}
		h := http.Header{"Terra-Signature": {header}}
		if _, err := terra.VerifySignature(secret, h, payload, time.Unix(ts, 0)); err == nil {
			// Only a header carrying the real HMAC may verify.
			_, want, _ := strings.Cut(terra.Sign(secret, time.Unix(ts, 0), payload), ",v1=")
			found := false
			for _, sig := range sigs {
				if hex.EncodeToString(sig) == want {
					found = true
				}
			}
			if !found {
				t.Fatalf("header without the right HMAC verified: %q", header)
			}
		}

		// A header produced by Sign always parses and verifies.
		unix %= 1 << 40 // keep to times time.Unix represents as a Go time
		if unix < 0 {
			unix = -unix
		}
		at := time.Unix(unix, 0)
		signed := terra.Sign(secret, at, payload)
		gotTS, gotSigs, err := terra.ParseSignatureHeader(signed)
		if err != nil || gotTS != unix || len(gotSigs) != 1 {
			t.Fatalf("Sign output %q: t=%d, %d sigs, %v", signed, gotTS, len(gotSigs), err)
		}
		if _, err := terra.VerifySignature(secret, http.Header{"X-Terra-Signature": {signed}}, payload, at); err != nil {
			t.Fatalf("Sign output does not verify: %v", err)
		}
		if len(payload) > 0 {
			tampered := append([]byte{payload[0] ^ 1}, payload[1:]...)
			if _, err := terra.VerifySignature(secret, http.Header{"Terra-Signature": {signed}}, tampered, at); !errors.Is(err, terra.ErrBadSignature) {
				t.Fatalf("tampered body: %v", err)
			}
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	for _, s := range eventSamples {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"type":"permission_change","user":{"user_id":"u"},"scopes_added":["a,b"," "]}`))
	f.Add([]byte(`{"type":"auth","status":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := terra.DecodeEvent(data)
		if err != nil {
			if !errors.Is(err, terra.ErrInvalidEvent) {
				t.Fatalf("error %v does not wrap ErrInvalidEvent", err)
			}
			return
		}
		if ev.Type == "" {
			t.Fatal("decoded an event without a type")
		}
		// A decoded event is a fixed point: encoding it and decoding again gives the
		// same event, so what the handler stores does not depend on how Terra spelled it.
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		ev2, err := terra.DecodeEvent(again)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", again, err)
		}
		if !reflect.DeepEqual(ev, ev2) {
			t.Fatalf("not stable:\n%+v\n%+v", ev, ev2)
		}
		// What the handler relies on holds.
		switch ev.Type {
		case terra.EventDeauth, terra.EventAccessRevoked, terra.EventConnectionError, terra.EventPermissionChange:
			if ev.User == nil || ev.User.UserID == "" {
				t.Fatalf("%s without user_id", ev.Type)
			}
		case terra.EventUserReauth:
			if ev.NewUser == nil || ev.NewUser.UserID == "" || ev.NewUser.Provider == "" {
				t.Fatal("user_reauth without new_user")
			}
		}
		for _, s := range []*string{ev.ScopesAdded, ev.ScopesRemoved} {
			if s != nil && strings.Join(terra.SplitScopes(*s), ",") != *s {
				t.Fatalf("scopes not normalised: %q", *s)
			}
		}
	})
}
