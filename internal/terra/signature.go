package terra

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Signature errors; VerifySignature's errors match exactly one of them with errors.Is.
var (
	// ErrNoSignature: the request carries no terra-signature header.
	ErrNoSignature = errors.New("terra webhook: no signature header")
	// ErrBadSignature: the header is malformed or no v1 value matches the body.
	ErrBadSignature = errors.New("terra webhook: bad signature")
	// ErrStaleSignature: the signature matches but its timestamp is further from now
	// than SignatureTolerance, so it may be a replay.
	ErrStaleSignature = errors.New("terra webhook: stale signature")
)

// signatureHeaders are the names Terra signs under: the original and the one the
// platform now also sends.
var signatureHeaders = []string{"terra-signature", "X-Terra-Signature"}

// Sign returns the terra-signature header value for body sent at t:
// "t=<unix>,v1=<hex HMAC-SHA256(secret, "<unix>.<body>")>".
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := t.Unix()
	return "t=" + strconv.FormatInt(ts, 10) + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	var prefix [20]byte // "<unix>.", at most 19 digits and the dot
	m.Write(append(strconv.AppendInt(prefix[:0], ts, 10), '.'))
	m.Write(body)
	return m.Sum(make([]byte, 0, sha256.Size))
}

// ParseSignatureHeader splits a signature header value into its timestamp and v1
// signatures. Spaces around parts are tolerated and schemes other than v1 are ignored;
// a v1 value that is not 64 hex digits cannot match and is skipped, like an unknown
// scheme, so one malformed value does not void a valid one beside it. A missing or
// non-numeric t, or no usable v1, is an error wrapping ErrBadSignature.
func ParseSignatureHeader(v string) (ts int64, v1 [][]byte, err error) {
	haveT := false
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		key, val, ok := strings.Cut(part, "=")
		if !ok {
			return 0, nil, fmt.Errorf("%w: malformed part %q", ErrBadSignature, truncate(part))
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case "t":
			if haveT {
				return 0, nil, fmt.Errorf("%w: more than one t", ErrBadSignature)
			}
			if val == "" || strings.TrimLeft(val, "0123456789") != "" || len(val) > 18 {
				return 0, nil, fmt.Errorf("%w: t is not a unix time", ErrBadSignature)
			}
			ts, _ = strconv.ParseInt(val, 10, 64)
			haveT = true
		case "v1":
			if sig, err := hex.DecodeString(val); err == nil && len(sig) == sha256.Size {
				v1 = append(v1, sig)
			}
		}
	}
	if !haveT {
		return 0, nil, fmt.Errorf("%w: no t", ErrBadSignature)
	}
	if len(v1) == 0 {
		return 0, nil, fmt.Errorf("%w: no v1 of 64 hex digits", ErrBadSignature)
	}
	return ts, v1, nil
}

// truncate keeps attacker-controlled text in errors short.
func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// VerifySignature checks a webhook's signature on the raw body, before any JSON parsing.
// It reads every terra-signature and X-Terra-Signature value (header names in any case)
// and accepts the request if one v1 matches and its timestamp is within
// SignatureTolerance of now, either way. It returns the signed time.
func VerifySignature(secret []byte, h http.Header, body []byte, now time.Time) (signedAt time.Time, err error) {
	if len(secret) == 0 {
		// An empty secret would make every forged signature trivially valid.
		return time.Time{}, fmt.Errorf("%w: no signing secret configured", ErrBadSignature)
	}
	found := false
	err = ErrBadSignature
	for k, vs := range h {
		if !slices.ContainsFunc(signatureHeaders, func(name string) bool { return strings.EqualFold(k, name) }) {
			continue
		}
		for _, v := range vs {
			found = true
			ts, sigs, perr := ParseSignatureHeader(v)
			if perr != nil {
				continue
			}
			want := mac(secret, ts, body)
			matched := false
			for _, sig := range sigs {
				// Every candidate is compared, in constant time each.
				if hmac.Equal(sig, want) {
					matched = true
				}
			}
			if !matched {
				continue
			}
			signedAt = time.Unix(ts, 0).UTC()
			if d := now.Sub(signedAt); d > SignatureTolerance || d < -SignatureTolerance {
				err = ErrStaleSignature
				continue
			}
			return signedAt, nil
		}
	}
	if !found {
		return time.Time{}, ErrNoSignature
	}
	return time.Time{}, err
}
