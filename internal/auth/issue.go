package auth

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// IssueOptions describes a token made by [Issue].
type IssueOptions struct {
	// Subject becomes the sub claim, the user's ID. Required.
	Subject string
	// Issuer and Audience become iss and aud when non-empty.
	Issuer   string
	Audience string
	// TTL is how long the token is valid after Now. It must be positive.
	TTL time.Duration
	// Now is the issue time; zero means the current time.
	Now time.Time
}

// Issue signs an HS256 token with sub, iat, nbf and exp (and iss and aud when
// set). It exists for the demo mode and for tests: in production tokens come
// from the sign-in service.
func Issue(secret []byte, opts IssueOptions) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("auth: secret must not be empty")
	}
	if opts.Subject == "" {
		return "", errors.New("auth: subject must not be empty")
	}
	if opts.TTL <= 0 {
		return "", errors.New("auth: ttl must be positive")
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	claims := jwt.RegisteredClaims{
		Subject:   opts.Subject,
		Issuer:    opts.Issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(opts.TTL)),
	}
	if opts.Audience != "" {
		claims.Audience = jwt.ClaimStrings{opts.Audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
