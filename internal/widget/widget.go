// Package widget creates Terra widget sessions for signed-in end users: it checks the
// caller's input, asks Terra with the server's credentials, and records the session.
package widget

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/redirect"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
)

// Limits on caller input, generous for real use and small enough to keep junk out of Terra
// calls and the store.
const (
	maxProviders = 50
)

var (
	providerName = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,39}$`)
	languageTag  = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$`)
)

// Terra is the part of the Terra client the service needs.
type Terra interface {
	GenerateWidgetSession(ctx context.Context, p terra.WidgetSessionParams) (terra.WidgetSession, error)
}

// InputError is a problem with the caller's input. Its message is safe to show the caller.
type InputError struct {
	Field  string
	Reason string
}

func (e *InputError) Error() string { return e.Field + ": " + e.Reason }

// Input is what the caller may choose about a session. The end user is never part of it.
type Input struct {
	Providers          []string
	Language           string
	SuccessRedirectURL string
	FailureRedirectURL string
}

// Service creates widget sessions.
type Service struct {
	terra     Terra
	store     store.Store
	redirects *redirect.Allowlist
	log       *slog.Logger
	now       func() time.Time
}

// NewService returns a Service. redirects lists the URLs the caller may be sent back to.
func NewService(t Terra, st store.Store, redirects *redirect.Allowlist, log *slog.Logger) *Service {
	return &Service{terra: t, store: st, redirects: redirects, log: log, now: time.Now}
}

// Create starts a widget session for the end user referenceID (the authenticated caller).
// Input is checked before Terra is called: bad input changes nothing anywhere.
func (s *Service) Create(ctx context.Context, referenceID string, in Input) (store.WidgetSession, error) {
	providers, err := normaliseProviders(in.Providers)
	if err != nil {
		return store.WidgetSession{}, err
	}
	lang := strings.TrimSpace(in.Language)
	if lang != "" && !languageTag.MatchString(lang) {
		return store.WidgetSession{}, &InputError{Field: "language", Reason: "want a language tag such as en or pt-BR"}
	}
	for _, r := range []struct{ field, url string }{
		{"successRedirectUrl", in.SuccessRedirectURL},
		{"failureRedirectUrl", in.FailureRedirectURL},
	} {
		if r.url == "" {
			continue
		}
		if err := s.redirects.Check(r.url); err != nil {
			return store.WidgetSession{}, &InputError{Field: r.field, Reason: err.Error()}
		}
	}

	ws, err := s.terra.GenerateWidgetSession(ctx, terra.WidgetSessionParams{
		Providers:              strings.Join(providers, ","),
		Language:               lang,
		ReferenceID:            referenceID,
		AuthSuccessRedirectURL: in.SuccessRedirectURL,
		AuthFailureRedirectURL: in.FailureRedirectURL,
	})
	if err != nil {
		return store.WidgetSession{}, fmt.Errorf("create widget session: %w", err)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	sess := store.WidgetSession{
		ID:                 ws.SessionID,
		ReferenceID:        referenceID,
		Providers:          providers,
		Language:           lang,
		SuccessRedirectURL: in.SuccessRedirectURL,
		FailureRedirectURL: in.FailureRedirectURL,
		URL:                ws.URL,
		CreatedAt:          now,
		UpdatedAt:          now,
		ExpiresAt:          now.Add(time.Duration(ws.ExpiresIn * float64(time.Second))),
		Status:             store.SessionCreated,
	}
	if err := s.store.CreateWidgetSession(ctx, sess); err != nil {
		return store.WidgetSession{}, fmt.Errorf("record widget session: %w", err)
	}
	s.log.InfoContext(ctx, "widget session created", "session_id", sess.ID, "providers", sess.Providers)
	return sess, nil
}

// normaliseProviders upper-cases, trims and de-duplicates provider names, keeping order.
func normaliseProviders(in []string) ([]string, error) {
	if len(in) > maxProviders {
		return nil, &InputError{Field: "providers", Reason: fmt.Sprintf("at most %d providers", maxProviders)}
	}
	seen := make(map[string]bool, len(in))
	var out []string
	for _, p := range in {
		p = strings.ToUpper(strings.TrimSpace(p))
		if !providerName.MatchString(p) {
			return nil, &InputError{Field: "providers", Reason: "want Terra provider names such as OURA or GARMIN"}
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}
