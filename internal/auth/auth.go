// Package auth establishes who is calling terragate.
//
// End users sign in with another service, which hands the app an HS256 JSON
// Web Token; the app sends it as "Authorization: Bearer <token>". A [Verifier]
// checks that token against a shared secret, and [Verifier.Middleware] puts
// the resulting [User], or the reason there is none, in the request context.
package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
)

// ErrUnauthenticated is the kind of every error this package returns for a
// caller that could not be identified. Errors wrap it with a short reason that
// is safe to show to the client; test for it with errors.Is.
var ErrUnauthenticated = errors.New("unauthenticated")

// DefaultLeeway is the clock skew tolerated on exp and nbf when
// [Config.Leeway] is zero. The sign-in service and the gateway run on
// different machines, so a token must not flap between valid and invalid
// because their clocks differ by a few seconds.
const DefaultLeeway = 30 * time.Second

// MaxSubjectLen bounds the sub claim in bytes. User IDs end up in database
// keys and logs, so an unbounded value from a token is not accepted.
const MaxSubjectLen = 255

// maxTokenLen bounds the token text. A real HS256 token is a few hundred
// bytes; refusing huge ones early keeps decoding cheap.
const maxTokenLen = 8 << 10

// algorithm is the only signing method accepted. Pinning it stops a token
// from choosing how it is verified ("none", or an asymmetric algorithm whose
// public key would be mistaken for the HMAC secret).
const algorithm = "HS256"

// Config says which tokens a [Verifier] accepts.
type Config struct {
	// Secret is the HMAC key shared with the sign-in service. It must not be
	// empty. Any length is accepted, but RFC 7518 asks for at least 32 bytes
	// for HS256; shorter secrets are easier to brute-force offline.
	Secret []byte
	// Issuer, when non-empty, must equal the token's iss claim.
	Issuer string
	// Audience, when non-empty, must be one of the token's aud values.
	Audience string
	// Leeway is the clock skew tolerated on exp and nbf. Zero means
	// [DefaultLeeway]; a negative value is refused.
	Leeway time.Duration
}

// User is an authenticated end user of the app.
type User struct {
	// ID is the token's sub claim, with surrounding spaces removed.
	ID string
}

// Verifier checks bearer tokens. It is safe for concurrent use.
type Verifier struct {
	secret   []byte
	issuer   string
	audience string
	parser   *jwt.Parser
	// now is replaceable so tests can pin the clock.
	now func() time.Time
}

// NewVerifier returns a Verifier for cfg. It refuses an empty secret and a
// negative leeway.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("auth: secret must not be empty")
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("auth: leeway must not be negative")
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	v := &Verifier{
		// Copied so a caller reusing its slice cannot change the key later.
		secret:   slices.Clone(cfg.Secret),
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		now:      time.Now,
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{algorithm}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	)
	return v, nil
}

// Verify checks token and returns the user it names. Every failure wraps
// [ErrUnauthenticated]; no error mentions the token or the secret.
func (v *Verifier) Verify(token string) (User, error) {
	if token == "" {
		return User{}, unauthenticated("missing bearer token")
	}
	if len(token) > maxTokenLen {
		return User{}, unauthenticated("token too long")
	}
	var claims jwt.RegisteredClaims
	parsed, err := v.parser.ParseWithClaims(token, &claims, v.key)
	if err != nil {
		return User{}, unauthenticated(reason(parsed, err))
	}
	if v.issuer != "" && claims.Issuer != v.issuer {
		return User{}, unauthenticated("issuer mismatch")
	}
	if v.audience != "" && !slices.Contains(claims.Audience, v.audience) {
		return User{}, unauthenticated("audience mismatch")
	}
	id := strings.TrimSpace(claims.Subject)
	switch {
	case id == "":
		return User{}, unauthenticated("token has no subject")
	case len(id) > MaxSubjectLen:
		return User{}, unauthenticated("token subject too long")
	case strings.ContainsFunc(id, unicode.IsControl):
		return User{}, unauthenticated("token subject invalid")
	}
	return User{ID: id}, nil
}

// key hands the parser the secret. The algorithm is checked again here so the
// secret is never used with anything but HS256, whatever the parser options.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	if t.Method != jwt.SigningMethodHS256 {
		return nil, errors.New("unexpected signing method")
	}
	return v.secret, nil
}

// reason turns a parser error into a short client-safe phrase. The parser's
// own messages are not passed on: they are detailed, and may quote decoded
// token content.
func reason(t *jwt.Token, err error) string {
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return "token malformed"
	}
	if t != nil {
		if alg, _ := t.Header["alg"].(string); alg != algorithm {
			return "token algorithm not allowed"
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "token signature invalid"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "token has no expiry"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet"
	default:
		return "token invalid"
	}
}

func unauthenticated(reason string) error {
	return fmt.Errorf("%w: %s", ErrUnauthenticated, reason)
}
