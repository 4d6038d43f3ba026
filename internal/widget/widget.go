// Package widget creates Terra widget sessions for signed-in end users: it checks the
// caller's input, asks Terra with the server's credentials, and records the session.
package widget

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/terragate/terragate/internal/fault"
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
	UserInfo(ctx context.Context, userID string) (terra.UserInfo, error)
}

// Applier applies what a widget return taught terragate, through the store's rules, and
// tells subscribers: the connection service, which owns the mapping from Terra's terms.
type Applier interface {
	// ConfirmReturn applies a success Terra confirmed: u connected for sess's end user.
	ConfirmReturn(ctx context.Context, sess store.WidgetSession, u terra.User) (store.Outcome, error)
	// FailReturn applies a failure the widget reported, with its reason.
	FailReturn(ctx context.Context, sess store.WidgetSession, provider, reason string) (store.Outcome, error)
}

// InputError is a problem with the caller's input. Its message is safe to show the caller.
type InputError struct {
	Field  string
	Reason string
}

func (e *InputError) Error() string { return e.Field + ": " + e.Reason }

// Kind is fault.Invalid: the caller can correct the field.
func (e *InputError) Kind() fault.Kind { return fault.Invalid }

// FieldName is the input field the error is about.
func (e *InputError) FieldName() string { return e.Field }

// Input is what the caller may choose about a session. The end user is never part of it.
type Input struct {
	Providers          []string
	Language           string
	SuccessRedirectURL string
	FailureRedirectURL string
	// ShowDisconnect, when set, is passed to Terra: whether the widget lets the end user
	// remove an existing connection. Nil leaves Terra's default.
	ShowDisconnect *bool
	// By, when set, is who asked (audit.By): a newly created session is recorded as a
	// session.created entry by them, in the session's own transaction, with the session's
	// id as its Subject and its providers in its Detail (a session handed out again creates
	// nothing and records nothing).
	By *store.AuditEntry
}

// reuseMargin is how much life a session must have left to be handed out again: enough for
// a person to pick a provider and sign in.
const reuseMargin = 2 * time.Minute

// Config configures a Service.
type Config struct {
	// PublicURL is where browsers reach terragate; redirects come back to
	// PublicURL/widget/return/{sessionId}.
	PublicURL string
	// StateKey signs the return URLs' state.
	StateKey []byte
	// Redirects lists the URLs callers may be sent back to.
	Redirects *redirect.Allowlist
}

// Service creates widget sessions and handles the browser's return from the widget.
type Service struct {
	terra Terra
	store store.Store
	apply Applier
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
}

// NewService returns a Service.
func NewService(t Terra, st store.Store, apply Applier, cfg Config, log *slog.Logger) *Service {
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	return &Service{terra: t, store: st, apply: apply, cfg: cfg, log: log, now: time.Now}
}

// Create starts a widget session for the end user referenceID (the authenticated caller).
// Input is checked before Terra is called: bad input changes nothing anywhere. The same
// input while an earlier session is still live gets that session back, without a Terra call.
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
		if err := s.cfg.Redirects.Check(r.url); err != nil {
			return store.WidgetSession{}, &InputError{Field: r.field, Reason: err.Error()}
		}
	}

	now := s.now().UTC().Truncate(time.Millisecond)
	key := inputKey(providers, lang, in.SuccessRedirectURL, in.FailureRedirectURL, in.ShowDisconnect)
	if live, err := s.store.ReusableWidgetSession(ctx, referenceID, key, now.Add(reuseMargin)); err == nil {
		return live, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return store.WidgetSession{}, fmt.Errorf("look up live sessions: %w", err)
	}

	// terragate's own id, known before Terra is called, so the return URLs can carry it.
	id := uuid.NewString()
	params := terra.WidgetSessionParams{
		Providers:   strings.Join(providers, ","),
		Language:    lang,
		ReferenceID: referenceID,
	}
	if in.ShowDisconnect != nil {
		show := *in.ShowDisconnect
		params.ShowDisconnect = &show
	}
	if in.SuccessRedirectURL != "" {
		params.AuthSuccessRedirectURL = s.returnURL(id, outcomeSuccess, now)
	}
	if in.FailureRedirectURL != "" {
		params.AuthFailureRedirectURL = s.returnURL(id, outcomeFailure, now)
	}
	ws, err := s.terra.GenerateWidgetSession(ctx, params)
	if err != nil {
		return store.WidgetSession{}, fmt.Errorf("create widget session: %w", err)
	}
	sess := store.WidgetSession{
		ID:                 id,
		TerraSessionID:     ws.SessionID,
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
		InputKey:           key,
	}
	var audit []store.AuditEntry
	if in.By != nil {
		e := *in.By
		e.Action, e.Subject, e.ReferenceID = store.ActionSessionCreated, sess.ID, referenceID
		if e.At.IsZero() {
			e.At = s.now().UTC()
		}
		e.Detail = maps.Clone(e.Detail)
		if e.Detail == nil {
			e.Detail = map[string]string{}
		}
		e.Detail["providers"] = strings.Join(sess.Providers, ",")
		audit = append(audit, e)
	}
	if err := s.store.CreateWidgetSession(ctx, sess, audit...); err != nil {
		return store.WidgetSession{}, fmt.Errorf("record widget session: %w", err)
	}
	s.log.InfoContext(ctx, "widget session created", "session_id", sess.ID, "terra_session_id", ws.SessionID, "providers", sess.Providers)
	return sess, nil
}

// Session returns one of the end user's sessions; anyone else's is ErrNotFound, exactly as
// an unknown one.
func (s *Service) Session(ctx context.Context, referenceID, id string) (store.WidgetSession, error) {
	sess, err := s.store.WidgetSession(ctx, id)
	if err != nil {
		return store.WidgetSession{}, err
	}
	if sess.ReferenceID != referenceID {
		return store.WidgetSession{}, fmt.Errorf("widget session: %w", store.ErrNotFound)
	}
	return sess, nil
}

// EffectiveStatus is the session's status as of now: a CREATED session past its expiry is
// EXPIRED even before the background expiry has recorded it.
func EffectiveStatus(sess store.WidgetSession, now time.Time) store.SessionStatus {
	if sess.Status == store.SessionCreated && !now.Before(sess.ExpiresAt) {
		return store.SessionExpired
	}
	return sess.Status
}

// Final reports whether a status can no longer change.
func Final(st store.SessionStatus) bool { return st != store.SessionCreated }

// AlreadyConnected lists the requested providers (every provider when none were requested)
// that the end user referenceID has an active connection to, so an app can say so before
// the end user connects one twice.
func (s *Service) AlreadyConnected(ctx context.Context, referenceID string, providers []string) ([]string, error) {
	active, err := s.store.ListTerraUsers(ctx, referenceID, false)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, u := range active {
		if (len(providers) == 0 || slices.Contains(providers, u.Provider)) && !slices.Contains(out, u.Provider) {
			out = append(out, u.Provider)
		}
	}
	return out, nil
}

// inputKey identifies a request's input, for handing out a live session again. An unset
// showDisconnect leaves the key as it was before the option existed, so sessions created
// then are still found.
func inputKey(providers []string, lang, success, failure string, showDisconnect *bool) string {
	h := sha256.New()
	parts := []string{strings.Join(providers, ","), lang, success, failure}
	if showDisconnect != nil {
		parts = append(parts, "show_disconnect="+strconv.FormatBool(*showDisconnect))
	}
	for _, part := range parts {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
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
