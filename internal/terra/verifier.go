package terra

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Verifier checks a webhook's signature over a body read in parts (Write), so that a body
// of any size is verified as it streams by, never held whole. It holds one HMAC per secret
// and signature header; Check gives, for each secret, what VerifySignature would.
type Verifier struct {
	found   bool // a signature header was sent
	headers []signed
}

// signed is one signature header: its timestamp, its v1 values and, per secret, the HMAC
// being computed.
type signed struct {
	ts   int64
	v1   [][]byte
	err  error // the header is malformed
	macs []hash.Hash
}

// NewVerifier starts verifying h's signatures against each of secrets, none of them empty
// (an empty secret would make every forged signature valid).
func NewVerifier(secrets [][]byte, h http.Header) *Verifier {
	v := &Verifier{}
	for k, vs := range h {
		if !slices.ContainsFunc(signatureHeaders, func(name string) bool { return strings.EqualFold(k, name) }) {
			continue
		}
		for _, val := range vs {
			v.found = true
			ts, sigs, err := ParseSignatureHeader(val)
			s := signed{ts: ts, v1: sigs, err: err}
			if err == nil {
				for _, secret := range secrets {
					m := hmac.New(sha256.New, secret)
					m.Write(append(strconv.AppendInt(nil, ts, 10), '.'))
					s.macs = append(s.macs, m)
				}
			}
			v.headers = append(v.headers, s)
		}
	}
	return v
}

// Write adds p to the body being verified; it never fails.
func (v *Verifier) Write(p []byte) (int, error) {
	for _, s := range v.headers {
		for _, m := range s.macs {
			m.Write(p)
		}
	}
	return len(p), nil
}

// Check reports, once the whole body was written, whether secret i (in NewVerifier's list)
// signed it within SignatureTolerance of now, with VerifySignature's errors.
func (v *Verifier) Check(i int, now time.Time) (signedAt time.Time, err error) {
	if !v.found {
		return time.Time{}, ErrNoSignature
	}
	err = ErrBadSignature
	for _, s := range v.headers {
		if s.err != nil {
			continue
		}
		want := s.macs[i].Sum(nil)
		matched := false
		for _, sig := range s.v1 {
			if hmac.Equal(sig, want) {
				matched = true
			}
		}
		if !matched {
			continue
		}
		signedAt = time.Unix(s.ts, 0).UTC()
		if d := now.Sub(signedAt); d > SignatureTolerance || d < -SignatureTolerance {
			err = ErrStaleSignature
			continue
		}
		return signedAt, nil
	}
	return time.Time{}, err
}
