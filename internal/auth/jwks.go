package auth

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Defaults of the JWKS settings in [Config].
const (
	// DefaultJWKSRefreshLimit is at most one fetch for unknown key IDs every
	// five minutes: providers announce new keys well before signing with
	// them, so a rotation needs one fetch, and a flood of made-up key IDs
	// costs the provider nothing.
	DefaultJWKSRefreshLimit = 5 * time.Minute
	// DefaultJWKSRefreshInterval fetches the set hourly so that a key the
	// provider revoked stops verifying within the hour.
	DefaultJWKSRefreshInterval = time.Hour
	// DefaultJWKSTimeout keeps a slow provider from holding a request (or
	// the start) for long.
	DefaultJWKSTimeout = 10 * time.Second
)

// maxJWKSSize caps a JWKS response. Real sets are a few kilobytes; the cap
// keeps a broken or hostile endpoint from making the gateway buffer without
// bound.
const maxJWKSSize = 1 << 20

// minRSABits is the smallest RSA modulus accepted from a JWKS (NIST's floor
// for signatures today).
const minRSABits = 2048

// maxKIDLen bounds the key ID looked up. IDs are short; a long one is not
// worth a lookup, let alone a fetch.
const maxKIDLen = 256

// jwks holds an identity provider's keys, fetched and refreshed by keyfunc.
type jwks struct {
	storage jwkset.Storage
}

// newJWKS fetches the set at cfg.JWKSURL and starts its refresh goroutine,
// which runs until ctx is done.
func newJWKS(ctx context.Context, cfg Config) (*jwks, error) {
	if err := checkJWKSURL(cfg.JWKSURL); err != nil {
		return nil, err
	}
	if cfg.JWKSRefreshLimit < 0 || cfg.JWKSRefreshInterval < 0 || cfg.JWKSTimeout < 0 {
		return nil, errors.New("auth: JWKS durations must not be negative")
	}
	limit := cmp.Or(cfg.JWKSRefreshLimit, DefaultJWKSRefreshLimit)
	interval := cmp.Or(cfg.JWKSRefreshInterval, DefaultJWKSRefreshInterval)
	timeout := cmp.Or(cfg.JWKSTimeout, DefaultJWKSTimeout)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	clean := redactor(cfg.JWKSURL)
	failFirst := false // an unreachable provider at start is an error, not an empty set
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:                    jwksClient(cfg.HTTPClient, timeout),
		HTTPTimeout:               timeout,
		NoErrorReturnFirstHTTPReq: &failFirst,
		// The unknown-kid fetch runs under this deadline too. Waiting for
		// the limiter fails at once when the next allowed fetch is further
		// away than that, so with a limit of minutes and a timeout of
		// seconds a request is never parked behind the limit.
		RateLimitWaitMax: timeout,
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				logger.WarnContext(ctx, "auth: JWKS refresh failed; cached keys stay in use", "error", clean(err))
			}
		},
		RefreshInterval:   interval,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(limit), 1),
	})
	if err != nil {
		return nil, fmt.Errorf("auth: fetch JWKS: %s", clean(err))
	}
	j := &jwks{storage: kf.Storage()}
	keys, err := j.storage.KeyReadAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("auth: read JWKS: %w", err)
	}
	if !slices.ContainsFunc(keys, usable) {
		// Typically the URL of a discovery document rather than of the set.
		return nil, errors.New("auth: JWKS holds no usable RS256 or ES256 key")
	}
	return j, nil
}

// key returns the key, or the set of keys when the token names none, that
// may verify t. Only keys whose type matches t's algorithm qualify.
func (j *jwks) key(ctx context.Context, t *jwt.Token) (any, error) {
	raw, named := t.Header["kid"]
	if !named {
		all, err := j.storage.KeyReadAll(ctx)
		if err != nil {
			return nil, errUnknownKey
		}
		var set jwt.VerificationKeySet
		for _, k := range all {
			if key, err := verificationKey(k, t.Method); err == nil {
				set.Keys = append(set.Keys, key)
			}
		}
		if len(set.Keys) == 0 {
			return nil, errUnknownKey
		}
		return set, nil
	}
	kid, ok := raw.(string)
	if !ok || kid == "" || len(kid) > maxKIDLen {
		return nil, errUnknownKey
	}
	// Refetches the set, within the rate limit, when kid is not cached.
	k, err := j.storage.KeyRead(ctx, kid)
	if err != nil {
		return nil, errUnknownKey
	}
	return verificationKey(k, t.Method)
}

// has reports whether the set still holds the key kid (refetching it, within the rate
// limit, when it does not).
func (j *jwks) has(ctx context.Context, kid string) bool {
	if j == nil {
		return false
	}
	_, err := j.storage.KeyRead(ctx, kid)
	return err == nil
}

// verificationKey returns k's public key if it may verify a token signed
// with m. The key type decides the algorithm: an RSA key verifies RS256 only
// and a P-256 key ES256 only, whatever the token claims.
func verificationKey(k jwkset.JWK, m jwt.SigningMethod) (any, error) {
	meta := k.Marshal()
	if meta.USE != "" && meta.USE != jwkset.UseSig {
		return nil, errUnusableKey
	}
	if len(meta.KEYOPS) > 0 && !slices.Contains(meta.KEYOPS, jwkset.KeyOpsVerify) {
		return nil, errUnusableKey
	}
	if meta.ALG != "" && meta.ALG.String() != m.Alg() {
		return nil, errAlgorithm
	}
	key := k.Key()
	// A provider that publishes private material by mistake still only
	// lends its public half here.
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public()
	}
	switch pub := key.(type) {
	case *rsa.PublicKey:
		if m != jwt.SigningMethodRS256 {
			return nil, errAlgorithm
		}
		if pub.N.BitLen() < minRSABits {
			return nil, errUnusableKey
		}
		return pub, nil
	case *ecdsa.PublicKey:
		if m != jwt.SigningMethodES256 || pub.Curve != elliptic.P256() {
			return nil, errAlgorithm
		}
		return pub, nil
	default:
		return nil, errAlgorithm
	}
}

// usable reports whether k can verify tokens of some accepted algorithm.
func usable(k jwkset.JWK) bool {
	_, rsaErr := verificationKey(k, jwt.SigningMethodRS256)
	_, ecErr := verificationKey(k, jwt.SigningMethodES256)
	return rsaErr == nil || ecErr == nil
}

// checkJWKSURL refuses addresses whose keys an attacker on the network could
// replace. The URL itself is not quoted: it may carry credentials.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("auth: JWKS URL is invalid")
	}
	if u.User != nil {
		return errors.New("auth: JWKS URL must not carry credentials")
	}
	if !secureURL(u) {
		return errors.New("auth: JWKS URL must be https (http only for loopback addresses)")
	}
	return nil
}

// redactor returns a function that makes an error from the JWKS client fit
// for a log line: on one line, and without the URL's query and fragment,
// which some providers use for parameters that may be secret.
func redactor(raw string) func(error) string {
	safe, forms := "the JWKS URL", []string{raw}
	if u, err := url.Parse(raw); err == nil {
		forms = append(forms, u.String())
		u.RawQuery, u.Fragment, u.RawFragment = "", "", ""
		safe = u.String()
	}
	return func(err error) string {
		msg := err.Error()
		for _, f := range forms {
			msg = strings.ReplaceAll(msg, f, safe)
		}
		return strings.Join(strings.Fields(msg), " ")
	}
}

func secureURL(u *url.URL) bool {
	switch u.Scheme {
	case "https":
		return true
	case "http":
		host := u.Hostname()
		ip := net.ParseIP(host)
		return host == "localhost" || (ip != nil && ip.IsLoopback())
	default:
		return false
	}
}

// jwksClient returns a copy of base (or a new client) whose requests time out
// after timeout, whose responses are capped at maxJWKSSize, and which follows
// redirects only to addresses JWKSURL itself could have named.
func jwksClient(base *http.Client, timeout time.Duration) *http.Client {
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = capTransport{next: next, max: maxJWKSSize}
	if c.Timeout == 0 || c.Timeout > timeout {
		c.Timeout = timeout
	}
	check := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if !secureURL(req.URL) || req.URL.User != nil {
			return errors.New("auth: insecure JWKS redirect refused")
		}
		if len(via) >= 5 {
			return errors.New("auth: too many JWKS redirects")
		}
		if check != nil {
			return check(req, via)
		}
		return nil
	}
	return c
}

// capTransport limits the body of every response it returns.
type capTransport struct {
	next http.RoundTripper
	max  int64
}

func (t capTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, left: t.max}
	return resp, nil
}

var errTooLarge = errors.New("auth: JWKS response too large")

// cappedBody fails, rather than silently truncating, once more than left
// bytes arrive, so the refresh reports why it failed.
type cappedBody struct {
	io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	if int64(n) > b.left {
		n = int(b.left)
		b.left = 0
		return n, errTooLarge
	}
	b.left -= int64(n)
	return n, err
}
