// Package stdwebhook signs outgoing webhooks the Standard Webhooks way
// (https://www.standardwebhooks.com): the headers webhook-id, webhook-timestamp and
// webhook-signature, "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>", with keys given as
// "whsec_" secrets. Consumers verify them with any of the spec's libraries.
package stdwebhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names, as the spec writes them.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every secret.
const SecretPrefix = "whsec_"

// Key sizes a secret may decode to: the spec asks for 24 to 64 random bytes.
const (
	MinKeyBytes = 24
	MaxKeyBytes = 64
)

// Secret is a signing key. It never prints itself.
type Secret struct{ key []byte }

// ParseSecret reads a "whsec_" secret: the prefix, then the standard base64 of 24 to 64
// bytes. Its errors never repeat the secret.
func ParseSecret(s string) (Secret, error) {
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return Secret{}, errors.New(`want "whsec_" followed by base64`)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return Secret{}, errors.New(`the part after "whsec_" is not standard base64`)
	}
	if len(key) < MinKeyBytes || len(key) > MaxKeyBytes {
		return Secret{}, fmt.Errorf("want base64 of %d to %d random bytes, got %d bytes", MinKeyBytes, MaxKeyBytes, len(key))
	}
	return Secret{key: key}, nil
}

// Sign returns the webhook-signature value of body sent as message id at t (whole seconds).
func (s Secret) Sign(id string, t time.Time, body []byte) string {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(t.Unix(), 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// SignReader is Sign over a body read from r, for bodies too large to hold: the HMAC is
// computed as the body streams by.
func (s Secret) SignReader(id string, t time.Time, r io.Reader) (string, error) {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(t.Unix(), 10)))
	mac.Write([]byte{'.'})
	if _, err := io.Copy(mac, r); err != nil {
		return "", err
	}
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// SetSignedHeaders sets the three Standard Webhooks headers of one attempt on h, with a
// signature made by SignReader for the same id and t.
func SetSignedHeaders(h http.Header, id string, t time.Time, signature string) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(t.Unix(), 10))
	h.Set(HeaderSignature, signature)
}

// SetHeaders sets the three Standard Webhooks headers of one attempt on h.
func (s Secret) SetHeaders(h http.Header, id string, t time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(t.Unix(), 10))
	h.Set(HeaderSignature, s.Sign(id, t, body))
}

// IsZero reports whether s holds no key.
func (s Secret) IsZero() bool { return len(s.key) == 0 }

// String hides the key.
func (s Secret) String() string {
	if s.IsZero() {
		return "unset"
	}
	return "set"
}

// LogValue hides the key from slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
