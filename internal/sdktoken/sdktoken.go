// Package sdktoken mints what an app needs to connect a phone-only source (Apple Health,
// Samsung Health, Health Connect) through Terra's mobile SDK for its signed-in end user: a
// single-use token, which only a backend holding Terra's credentials may mint, and the
// reference_id the app hands to Terra.instance, which carries proof that terragate issued
// it for that end user (package sdkref), since the device and not terragate sets it.
package sdktoken

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/terragate/terragate/internal/sdkref"
	"github.com/terragate/terragate/internal/store"
)

// Terra is the part of the Terra client the service needs.
type Terra interface {
	GenerateAuthToken(ctx context.Context) (token string, expiresIn time.Duration, err error)
}

// Auditor records who minted a token.
type Auditor interface {
	AppendAudit(ctx context.Context, e store.AuditEntry) error
}

// Token is what the app passes to the SDK: Token to initConnection, ReferenceID to
// Terra.instance.
type Token struct {
	Token       string
	ExpiresAt   time.Time
	ReferenceID string
}

// Service mints SDK tokens.
type Service struct {
	terra Terra
	refs  *sdkref.Keys
	audit Auditor
	log   *slog.Logger
	now   func() time.Time
}

// New returns a Service that asks t for tokens, issues references with refs and records
// each mint with audit.
func New(t Terra, refs *sdkref.Keys, audit Auditor, log *slog.Logger) *Service {
	return &Service{terra: t, refs: refs, audit: audit, log: log, now: time.Now}
}

// Create mints a token for the end user referenceID (the authenticated caller) and returns
// it with the reference issued for them. by is who asked (audit.By); the mint is recorded
// as sdk.token_created for that end user, never with the token, and a mint that cannot be
// recorded is refused: the token is single use and short-lived, so one left unused costs
// nothing.
func (s *Service) Create(ctx context.Context, referenceID string, by store.AuditEntry) (Token, error) {
	ref := s.refs.For(referenceID)
	if ref == "" {
		return Token{}, errors.New("sdk token: no key to issue references with")
	}
	asked := s.now()
	tok, ttl, err := s.terra.GenerateAuthToken(ctx)
	if err != nil {
		return Token{}, fmt.Errorf("create sdk token: %w", err)
	}
	entry := by
	entry.Action, entry.ReferenceID, entry.Subject = store.ActionSDKTokenCreated, referenceID, ""
	entry.Detail = nil
	if entry.At.IsZero() {
		entry.At = s.now().UTC()
	}
	if err := s.audit.AppendAudit(ctx, entry); err != nil {
		return Token{}, fmt.Errorf("record sdk token: %w", err)
	}
	s.log.InfoContext(ctx, "sdk token created", "expires_in", ttl)
	// From when Terra was asked: the token cannot outlive what the app is told.
	return Token{Token: tok, ExpiresAt: asked.UTC().Add(ttl).Truncate(time.Millisecond), ReferenceID: ref}, nil
}
