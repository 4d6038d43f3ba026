// Package auth establishes who is calling terragate.
//
// Two kinds of caller send "Authorization: Bearer <credential>":
//
//   - End users sign in with an identity provider, which hands the app a JSON
//     Web Token. The token is either HS256, signed with a secret shared with a
//     sign-in service ([Config.Secret]), or RS256/ES256, signed by a provider
//     that publishes its public keys as a JWKS ([Config.JWKSURL]).
//   - The app's own backends present a long random service key
//     ([Config.ServiceKeys]). They may act for a given end user with [ActAs].
//
// A [Verifier] checks the credential, and [Verifier.Middleware] puts the
// resulting [User], or the reason there is none, in the request context.
// Resolvers then ask [Require] (an end user), [RequireService] (a backend) or
// [Caller] (either).
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/terragate/terragate/internal/fault"
)

// ErrUnauthenticated is the kind of every error this package returns for a
// caller that could not be identified. Errors wrap it with a short reason that
// is safe to show to the client; test for it with errors.Is.
var ErrUnauthenticated = fault.New(fault.Unauthenticated, "unauthenticated")

// ErrForbidden is the kind of error returned when the caller is known but is
// not the kind of caller an operation needs (an end user calling a
// service-only operation, or the reverse). Like [ErrUnauthenticated], errors
// wrap it with a reason that is safe to show.
var ErrForbidden = fault.New(fault.Forbidden, "forbidden")

// DefaultLeeway is the clock skew tolerated on exp and nbf when
// [Config.Leeway] is zero. The sign-in service and the gateway run on
// different machines, so a token must not flap between valid and invalid
// because their clocks differ by a few seconds.
const DefaultLeeway = 30 * time.Second

// MaxSubjectLen bounds the subject in bytes. User IDs end up in database
// keys and logs, so an unbounded value from a token is not accepted.
const MaxSubjectLen = 255

// DefaultSubjectClaim is the claim that names the user when
// [Config.SubjectClaim] is empty.
const DefaultSubjectClaim = "sub"

// maxTokenLen bounds the credential text. Real tokens are a few hundred bytes
// to a couple of kilobytes; refusing huge ones early keeps decoding cheap,
// since claims are decoded before the signature can be checked.
const maxTokenLen = 8 << 10

// The accepted algorithms. Each is pinned to one source of keys, so a token
// cannot choose how it is verified: HS256 only ever uses [Config.Secret], and
// RS256/ES256 only ever use keys of the matching type from the JWKS. "none"
// and every other algorithm are refused.
const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"
)

// Config says which credentials a [Verifier] accepts. At least one of Secret,
// JWKSURL and ServiceKeys must be set.
type Config struct {
	// Secret is the HMAC key shared with a sign-in service that issues HS256
	// tokens. Any length is accepted, but RFC 7518 asks for at least 32 bytes
	// for HS256; shorter secrets are easier to brute-force offline. Empty means
	// HS256 tokens are refused.
	Secret []byte
	// Issuer, when non-empty, must equal the token's iss claim. Required with
	// JWKSURL: a provider's keys sign tokens for many tenants and apps.
	Issuer string
	// Audience, when non-empty, must be one of the token's aud values.
	// Required with JWKSURL, or a token the provider issued to any other app
	// would be accepted here.
	Audience string
	// Leeway is the clock skew tolerated on exp and nbf. Zero means
	// [DefaultLeeway]; a negative value is refused.
	Leeway time.Duration
	// SubjectClaim names the string claim that holds the user's ID, for
	// providers whose sub is not the ID the app uses. Empty means
	// [DefaultSubjectClaim]. The registered time, issuer, audience and token
	// ID claims are refused: they do not identify a user.
	SubjectClaim string

	// JWKSURL is the address of an identity provider's JSON Web Key Set. When
	// set, RS256 and ES256 tokens are verified with its keys. It must be https
	// (plain http is allowed for loopback addresses only, for local
	// development and tests). The set is fetched once at start, which must
	// succeed, and then kept up to date in the background: use
	// [NewVerifierContext] or call [Verifier.Close] to stop that.
	JWKSURL string
	// JWKSRefreshLimit is the least time between two fetches caused by tokens
	// naming a key ID the cached set does not have (as happens right after the
	// provider rotates its keys). It stops made-up key IDs from turning every
	// request into a fetch. Zero means [DefaultJWKSRefreshLimit]. Keep it
	// above JWKSTimeout: a shorter limit lets a request wait for the limiter.
	JWKSRefreshLimit time.Duration
	// JWKSRefreshInterval is how often the set is fetched regardless, so that
	// revoked keys disappear. Zero means [DefaultJWKSRefreshInterval].
	JWKSRefreshInterval time.Duration
	// JWKSTimeout bounds each fetch of the set, including the one at start.
	// Zero means [DefaultJWKSTimeout].
	JWKSTimeout time.Duration
	// HTTPClient fetches the set; nil means a client made for it. Its
	// responses are capped in size and its redirects held to the same rules
	// as JWKSURL either way.
	HTTPClient *http.Client
	// Logger records failed background refreshes (the cached keys stay in use
	// meanwhile). Nil means [slog.Default].
	Logger *slog.Logger

	// ServiceKeys identify the app's own backends; see [ServiceKey] and
	// [ParseServiceKeys]. Only their SHA-256 hashes are kept.
	ServiceKeys []ServiceKey
}

// User is an authenticated caller: an end user of the app, or one of the
// app's own backends.
type User struct {
	// ID is the end user's ID (the subject claim, with surrounding spaces
	// removed), or [ServicePrefix] followed by the service key's name for a
	// service caller. End-user subjects that start with ServicePrefix are
	// refused, so the two can never be confused.
	ID string
	// Service is true for a backend identified by a service key.
	Service bool
	// Actor is the ID of the service caller acting for this end user through
	// [ActAs], or empty when the end user is calling in person.
	Actor string
	// ValidUntil is when the verifier stops accepting the caller's token: its
	// exp claim plus the leeway, the same instant at which [Verifier.Verify]
	// refuses it. What outlives a request, such as a WebSocket connection and
	// its subscriptions, must end then. Zero for a service key, which does
	// not expire, and for a user a service acts for.
	ValidUntil time.Time
}

// Verifier checks bearer credentials. It is safe for concurrent use.
type Verifier struct {
	secret       []byte
	issuer       string
	audience     string
	subjectClaim string
	allowed      []string // algorithms with a configured key source
	parser       *jwt.Parser
	jwks         *jwks // nil without a JWKS URL
	services     serviceKeys
	// now is replaceable so tests can pin the clock.
	now    func() time.Time
	leeway time.Duration
	// verified remembers tokens that passed every check, so that an app's next request
	// with the same token skips the signature and the JSON (most of what a request costs
	// here). Entries are kept at most verifiedFor and their times are checked on every use.
	verified *lru.Cache[string, verifiedToken]

	ctx       context.Context // ends background work; canceled by Close
	cancel    context.CancelFunc
	closeOnce sync.Once
}

// NewVerifier returns a Verifier for cfg. It is the constructor for a
// configuration without JWKSURL (an HS256 secret and/or service keys), which
// starts no background work. With JWKSURL it behaves like
// [NewVerifierContext] with [context.Background], and the caller must call
// [Verifier.Close] when done.
func NewVerifier(cfg Config) (*Verifier, error) {
	return NewVerifierContext(context.Background(), cfg)
}

// NewVerifierContext returns a Verifier for cfg whose background JWKS
// refreshes end when ctx is done or [Verifier.Close] is called, whichever
// comes first. It fetches the JWKS before returning (bounded by
// [Config.JWKSTimeout]) and fails if the set cannot be fetched or holds no
// usable key, so a misconfigured provider stops the server at start rather
// than refusing every user later.
//
// It refuses a configuration that accepts nothing, a negative leeway or
// duration, JWKSURL without Issuer and Audience, and invalid service keys.
// No error quotes a secret or key.
func NewVerifierContext(ctx context.Context, cfg Config) (*Verifier, error) {
	if len(cfg.Secret) == 0 && cfg.JWKSURL == "" && len(cfg.ServiceKeys) == 0 {
		return nil, errors.New("auth: no secret, JWKS URL or service key configured")
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("auth: leeway must not be negative")
	}
	if cfg.JWKSURL != "" && (cfg.Issuer == "" || cfg.Audience == "") {
		return nil, errors.New("auth: issuer and audience are required with a JWKS URL")
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	subjectClaim, err := checkSubjectClaim(cfg.SubjectClaim)
	if err != nil {
		return nil, err
	}
	services, err := newServiceKeys(cfg.ServiceKeys)
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		// Copied so a caller reusing its slice cannot change the key later.
		secret:       slices.Clone(cfg.Secret),
		issuer:       cfg.Issuer,
		audience:     cfg.Audience,
		subjectClaim: subjectClaim,
		services:     services,
		now:          time.Now,
		leeway:       leeway,
	}
	v.verified, err = lru.New[string, verifiedToken](verifiedTokens)
	if err != nil {
		return nil, err
	}
	if len(v.secret) > 0 {
		v.allowed = append(v.allowed, algHS256)
	}
	v.ctx, v.cancel = context.WithCancel(ctx)
	if cfg.JWKSURL != "" {
		v.jwks, err = newJWKS(v.ctx, cfg)
		if err != nil {
			// Also ends the refresh goroutine the library may have started.
			v.cancel()
			return nil, err
		}
		v.allowed = append(v.allowed, algRS256, algES256)
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(v.allowed),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	)
	return v, nil
}

// Close stops the background JWKS refresh. Tokens signed with keys already
// fetched keep verifying; tokens naming a new key ID are refused from then on.
// Close is idempotent and harmless for a verifier without a JWKS.
func (v *Verifier) Close() error {
	v.closeOnce.Do(v.cancel)
	return nil
}

// Verify checks a bearer credential and returns the caller it names. A
// credential shaped like a JWT (three dot-separated parts) is verified as a
// token; anything else is looked up among the service keys. Every failure
// wraps [ErrUnauthenticated]; no error mentions the credential, a secret or
// a key.
func (v *Verifier) Verify(token string) (User, error) {
	if token == "" {
		return User{}, unauthenticated("missing bearer token")
	}
	if len(token) > maxTokenLen {
		return User{}, unauthenticated("token too long")
	}
	if !looksLikeJWT(token) && v.services.configured() {
		return v.verifyServiceKey(token)
	}
	return v.verifyJWT(token)
}

// looksLikeJWT reports whether s has the shape of a compact JWS. Service keys
// of that shape are refused at construction, so no key is ever routed here.
func looksLikeJWT(s string) bool {
	return strings.Count(s, ".") == 2
}

// Limits of the verified-token cache: a token removed from the identity provider's keys
// (or a key rotated out) is still accepted for at most verifiedFor, as the JWKS cache
// would anyway accept it until its next refresh.
const (
	verifiedTokens = 4096
	verifiedFor    = time.Minute
)

// verifiedToken is a token that passed every check at some time before until, and the
// window its nbf and exp claims allow. kid is the JWKS key that verified it ("" for the
// HS256 secret), which must still be in the provider's set for the token to be taken.
type verifiedToken struct {
	user                      User
	notBefore, expires, until time.Time
	kid                       string
}

// valid reports whether the remembered token may still be taken at now: its claims' times
// are checked again with the same leeway, so a cached token expires exactly as a parsed one.
func (t verifiedToken) valid(now time.Time, leeway time.Duration) bool {
	return now.Before(t.until) &&
		(t.notBefore.IsZero() || !now.Before(t.notBefore.Add(-leeway))) &&
		now.Before(t.expires.Add(leeway))
}

func (v *Verifier) verifyJWT(token string) (User, error) {
	now := v.now()
	if t, ok := v.verified.Get(token); ok {
		if t.valid(now, v.leeway) && (t.kid == "" || v.jwks.has(v.ctx, t.kid)) {
			return t.user, nil
		}
		v.verified.Remove(token)
	}
	user, parsed, claims, err := v.parseJWT(token)
	if err != nil {
		return User{}, err
	}
	t := verifiedToken{user: user, until: now.Add(verifiedFor)}
	if parsed.Method.Alg() != algHS256 {
		// A JWKS token is remembered only with the key it named, so that a key the
		// provider withdraws stops its tokens at once; one verified against the whole set
		// (no kid) is not remembered.
		kid, _ := parsed.Header["kid"].(string)
		if kid == "" {
			return user, nil
		}
		t.kid = kid
	}
	if claims.NotBefore != nil {
		t.notBefore = claims.NotBefore.Time
	}
	if claims.ExpiresAt != nil { // required by the parser
		t.expires = claims.ExpiresAt.Time
		v.verified.Add(token, t)
	}
	return user, nil
}

// parseJWT verifies a token in full: signature, algorithm, times, issuer, audience and
// subject.
func (v *Verifier) parseJWT(token string) (User, *jwt.Token, tokenClaims, error) {
	claims := tokenClaims{keepRaw: v.subjectClaim != DefaultSubjectClaim}
	parsed, err := v.parser.ParseWithClaims(token, &claims, v.key)
	if err != nil {
		return User{}, parsed, claims, unauthenticated(v.reason(parsed, err))
	}
	if v.issuer != "" && claims.Issuer != v.issuer {
		return User{}, parsed, claims, unauthenticated("issuer mismatch")
	}
	if v.audience != "" && !slices.Contains(claims.Audience, v.audience) {
		return User{}, parsed, claims, unauthenticated("audience mismatch")
	}
	id, reason := claims.subject(v.subjectClaim)
	if reason == "" {
		reason = checkUserID(id)
	}
	if reason != "" {
		return User{}, parsed, claims, unauthenticated(reason)
	}
	// exp is required by the parser. UTC keeps users comparable with ==.
	return User{ID: id, ValidUntil: claims.ExpiresAt.Add(v.leeway).UTC()}, parsed, claims, nil
}

// Reasons a key could not be chosen for a token. They are matched by reason,
// never shown as they are.
var (
	errAlgorithm   = errors.New("algorithm not allowed for this key")
	errUnknownKey  = errors.New("signing key unknown")
	errUnusableKey = errors.New("signing key unusable")
	errCritical    = errors.New("critical header extension")
)

// key picks the key for t from the source pinned to its algorithm. The
// parser has already refused algorithms outside v.allowed; the check is made
// again here so that no parser option can ever hand the secret to anything
// but HS256 or a JWKS key to anything but its own algorithm.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	// RFC 7515 section 4.1.11: a token relying on extensions the recipient
	// does not understand must be refused, and this package understands none.
	if _, ok := t.Header["crit"]; ok {
		return nil, errCritical
	}
	switch t.Method {
	case jwt.SigningMethodHS256:
		if len(v.secret) == 0 {
			return nil, errAlgorithm
		}
		return v.secret, nil
	case jwt.SigningMethodRS256, jwt.SigningMethodES256:
		if v.jwks == nil {
			return nil, errAlgorithm
		}
		return v.jwks.key(v.ctx, t)
	default:
		return nil, errAlgorithm
	}
}

// reason turns a parser error into a short client-safe phrase. The parser's
// own messages, and those of the key lookup, are not passed on: they are
// detailed, and may quote decoded token content such as the key ID.
func (v *Verifier) reason(t *jwt.Token, err error) string {
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return "token malformed"
	}
	if t != nil {
		if alg, _ := t.Header["alg"].(string); !slices.Contains(v.allowed, alg) {
			return "token algorithm not allowed"
		}
	}
	switch {
	case errors.Is(err, errAlgorithm):
		return "token algorithm not allowed"
	case errors.Is(err, errCritical):
		return "token has unsupported critical headers"
	case errors.Is(err, errUnknownKey):
		return "token signing key unknown"
	case errors.Is(err, errUnusableKey):
		return "token signing key unusable"
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

// tokenClaims decodes the registered claims strictly (a wrongly typed exp or
// sub makes the token malformed) and, when another claim names the user,
// keeps the raw claims so it can be read.
type tokenClaims struct {
	jwt.RegisteredClaims
	keepRaw bool
	raw     map[string]json.RawMessage
}

func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &c.RegisteredClaims); err != nil {
		return err
	}
	if !c.keepRaw {
		return nil
	}
	return json.Unmarshal(b, &c.raw)
}

// subject returns the user's ID from claim, or a client-safe reason.
func (c *tokenClaims) subject(claim string) (id, reason string) {
	value := c.Subject
	if claim != DefaultSubjectClaim {
		raw, ok := c.raw[claim]
		if !ok || string(raw) == "null" {
			return "", "token has no subject"
		}
		if err := json.Unmarshal(raw, &value); err != nil {
			return "", "token subject invalid"
		}
	}
	return strings.TrimSpace(value), ""
}

// checkUserID returns why id cannot name an end user, or "".
func checkUserID(id string) string {
	switch {
	case id == "":
		return "token has no subject"
	case len(id) > MaxSubjectLen:
		return "token subject too long"
	case strings.ContainsFunc(id, unicode.IsControl):
		return "token subject invalid"
	case hasServicePrefix(id):
		// Reserved for service callers: a token must not pass itself off as one.
		return "token subject invalid"
	}
	return ""
}

// checkSubjectClaim defaults and vets [Config.SubjectClaim].
func checkSubjectClaim(claim string) (string, error) {
	if claim == "" {
		return DefaultSubjectClaim, nil
	}
	switch claim {
	case "iss", "aud", "exp", "nbf", "iat", "jti":
		return "", fmt.Errorf("auth: subject claim %q does not identify a user", claim)
	}
	if strings.TrimSpace(claim) != claim || strings.ContainsFunc(claim, unicode.IsControl) {
		return "", errors.New("auth: subject claim name is invalid")
	}
	return claim, nil
}

func unauthenticated(reason string) error {
	return fmt.Errorf("%w: %s", ErrUnauthenticated, reason)
}

func forbidden(reason string) error {
	return fmt.Errorf("%w: %s", ErrForbidden, reason)
}
