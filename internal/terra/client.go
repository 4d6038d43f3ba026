package terra

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults applied by New to a zero Config field.
const (
	DefaultBaseURL   = "https://api.tryterra.co/v2"
	DefaultWidgetURL = "https://access.tryterra.co/api/widget/session"
	DefaultTimeout   = 10 * time.Second
)

// maxBody caps how much of any Terra answer is read.
const maxBody = 1 << 20

// Config is what the client needs to reach Terra.
type Config struct {
	// Observe, when set, is told of every attempt: its operation, HTTP status (0 when no
	// answer came), error and duration. Metrics hang off it.
	Observe func(op string, status int, err error, took time.Duration)
	// CircuitChange, when set, is told each endpoint's circuit state ("closed", "open" or
	// "half-open"): every endpoint's at New, then each change as the breaker makes it, so
	// metrics need not poll. It runs under the breaker's lock: it must be quick and must
	// not call the client. gobreaker moves an open circuit to half-open when the next call
	// (or CircuitStates) looks at it, so that change is reported then.
	CircuitChange func(endpoint, state string)
	// BaseURL is the API base, without a trailing slash (default DefaultBaseURL).
	BaseURL string
	// WidgetURL is Terra's 2026 widget session endpoint, asked first; the legacy
	// generateWidgetSession is used only once it answers 404 or 410 (default
	// DefaultWidgetURL).
	WidgetURL string
	// DevID and APIKey are the account's credentials; they never appear in errors or logs.
	DevID, APIKey string
	// Timeout bounds every call, retries and their waits included, on top of the caller's
	// context (default DefaultTimeout).
	Timeout time.Duration

	// Retries is how many times a call is tried again after a connection error, a timed
	// out attempt, or a 408, 429, 500, 502, 503 or 504 answer; other answers are final.
	// Every operation the client has is safe to repeat (reads; creating a widget session,
	// where a spare session is harmless; deauthenticateUser, which answers 404 once done).
	// Zero means one attempt per call; the gateway's configuration defaults to
	// DefaultRetries.
	Retries int
	// RetryBase and RetryMax shape the backoff between attempts: a random wait below
	// RetryBase*2^n, capped at RetryMax (defaults DefaultRetryBase and DefaultRetryMax).
	// A Retry-After from Terra is waited out in full, but a retry whose wait would end
	// after the call's deadline is not made: the call returns the last error at once.
	RetryBase, RetryMax time.Duration
	// AttemptTimeout bounds each attempt within Timeout (default Timeout/(Retries+1), at
	// least one second), so that one hung connection leaves time for another try.
	AttemptTimeout time.Duration

	// BreakerDisabled turns off the per-endpoint circuit breakers, for tests that need
	// every call to reach Terra.
	BreakerDisabled bool
	// BreakerTimeout is how long an endpoint's open circuit fails calls fast before
	// letting probes through (default DefaultBreakerTimeout).
	BreakerTimeout time.Duration
}

// Client calls Terra's API. It is safe for concurrent use.
type Client struct {
	cfg Config
	hc  *http.Client
	log *slog.Logger
	// widgetLegacy is set once the widget session endpoint (cfg.WidgetURL) answered 404 or
	// 410 for this account; from then on every session is created at the legacy
	// generateWidgetSession.
	widgetLegacy atomic.Bool
	// breakers holds one circuit breaker per endpoint; nil when disabled.
	breakers map[string]*breaker
}

// New returns a Client. A nil hc gets a client with no overall timeout (each call has
// cfg.Timeout); a nil log discards.
func New(cfg Config, hc *http.Client, log *slog.Logger) *Client {
	cfg.Retries = max(cfg.Retries, 0)
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = DefaultRetryBase
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	if cfg.BreakerTimeout <= 0 {
		cfg.BreakerTimeout = DefaultBreakerTimeout
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.WidgetURL == "" {
		cfg.WidgetURL = DefaultWidgetURL
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = max(cfg.Timeout/time.Duration(cfg.Retries+1), minAttemptTimeout)
	}
	if hc == nil {
		hc = &http.Client{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, hc: hc, log: log}
	if !cfg.BreakerDisabled {
		c.breakers = newBreakers(cfg.BreakerTimeout, cfg.CircuitChange, log)
	}
	return c
}

// GenerateWidgetSession creates a widget session the end user connects a provider through.
// It asks Config.WidgetURL, Terra's 2026 endpoint, first. An account that endpoint does not
// know (404) or has turned away (410) is asked again once at the legacy
// generateWidgetSession, and every later call goes there directly: the switch is logged
// once. Any other answer, an error included, is final.
func (c *Client) GenerateWidgetSession(ctx context.Context, p WidgetSessionParams) (WidgetSession, error) {
	const op = "generateWidgetSession"
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	if !c.widgetLegacy.Load() {
		ws, err := c.widgetSession(ctx, op, epWidget, c.cfg.WidgetURL, p)
		var ae *APIError
		if !errors.As(err, &ae) || (ae.StatusCode != http.StatusNotFound && ae.StatusCode != http.StatusGone) {
			return ws, err
		}
		if c.widgetLegacy.CompareAndSwap(false, true) {
			c.log.WarnContext(ctx, "terra: the widget session endpoint does not serve this account; using the legacy generateWidgetSession from now on",
				"status", ae.StatusCode)
		}
	}
	return c.widgetSession(ctx, op, epLegacyWidget, c.cfg.BaseURL+"/auth/generateWidgetSession", p)
}

func (c *Client) widgetSession(ctx context.Context, op, ep, target string, p WidgetSessionParams) (WidgetSession, error) {
	var ws WidgetSession
	body, status, err := c.do(ctx, op, ep, http.MethodPost, target, p)
	if err != nil {
		return ws, err
	}
	if err := json.Unmarshal(body, &ws); err != nil {
		return ws, badResponse(op, status, "body is not a widget session")
	}
	switch {
	case ws.SessionID == "":
		return ws, badResponse(op, status, "widget session without session_id")
	case ws.URL == "":
		return ws, badResponse(op, status, "widget session without url")
	case !(ws.ExpiresIn > 0):
		return ws, badResponse(op, status, "widget session without a positive expires_in")
	}
	return ws, nil
}

// GenerateAuthToken mints a token for the mobile SDKs' initConnection (Apple Health,
// Samsung Health, Health Connect): single use, valid for expiresIn. It is a credential of
// the account for one connection: it goes to the signed-in end user's app and nowhere else.
func (c *Client) GenerateAuthToken(ctx context.Context) (token string, expiresIn time.Duration, err error) {
	const op = "generateAuthToken"
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	body, status, err := c.do(ctx, op, epAuthToken, http.MethodPost, c.cfg.BaseURL+"/auth/generateAuthToken", nil)
	if err != nil {
		return "", 0, err
	}
	var v struct {
		Token     string  `json:"token"`
		ExpiresIn float64 `json:"expires_in"`
	}
	switch {
	case json.Unmarshal(body, &v) != nil:
		return "", 0, badResponse(op, status, "body is not an auth token")
	case v.Token == "":
		return "", 0, badResponse(op, status, "auth token without token")
	case !(v.ExpiresIn > 0):
		return "", 0, badResponse(op, status, "auth token without a positive expires_in")
	}
	return v.Token, time.Duration(v.ExpiresIn * float64(time.Second)), nil
}

// UserInfoByReferenceID lists the Terra users (one per connected provider account) of
// one end user. An end user with no connection gives an empty slice.
func (c *Client) UserInfoByReferenceID(ctx context.Context, referenceID string) ([]User, error) {
	const op = "userInfo"
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	q := url.Values{"reference_id": {referenceID}}
	body, status, err := c.do(ctx, op, epUserInfo, http.MethodGet, c.cfg.BaseURL+"/userInfo?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	// The spec says a bare array; Terra's own example app reads {"users": [...]}.
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var users []User
		if err := json.Unmarshal(body, &users); err != nil {
			return nil, badResponse(op, status, "body is not a list of users")
		}
		return nonNil(users), nil
	}
	var wrapped struct {
		Users []User `json:"users"`
	}
	if err := json.Unmarshal(body, &wrapped); err != nil {
		return nil, badResponse(op, status, "body is not a list of users")
	}
	return nonNil(wrapped.Users), nil
}

// UserInfo returns one Terra user. An unknown user gives an error for which IsNotFound
// is true.
func (c *Client) UserInfo(ctx context.Context, userID string) (UserInfo, error) {
	const op = "userInfo"
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	var ui UserInfo
	q := url.Values{"user_id": {userID}}
	body, status, err := c.do(ctx, op, epUserInfo, http.MethodGet, c.cfg.BaseURL+"/userInfo?"+q.Encode(), nil)
	if err != nil {
		return ui, err
	}
	if err := json.Unmarshal(body, &ui); err != nil {
		return ui, badResponse(op, status, "body is not a user")
	}
	if ui.User.UserID == "" {
		return ui, badResponse(op, status, "user without user_id")
	}
	return ui, nil
}

// Subscriptions lists every Terra user of the account in one answer.
func (c *Client) Subscriptions(ctx context.Context) ([]User, error) {
	const op = "subscriptions"
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	body, status, err := c.do(ctx, op, epSubscriptions, http.MethodGet, c.cfg.BaseURL+"/subscriptions", nil)
	if err != nil {
		return nil, err
	}
	p, err := decodeSubscriptions(op, status, body)
	return p.Users, err
}

// SubscriptionsPage returns one zero-based page of the account's Terra users. A perPage
// of zero or less leaves Terra's default (500).
func (c *Client) SubscriptionsPage(ctx context.Context, page, perPage int) (SubscriptionsPage, error) {
	const op = "subscriptions"
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	q := url.Values{"page": {strconv.Itoa(page)}}
	if perPage > 0 {
		q.Set("per_page", strconv.Itoa(perPage))
	}
	body, status, err := c.do(ctx, op, epSubscriptions, http.MethodGet, c.cfg.BaseURL+"/subscriptions?"+q.Encode(), nil)
	if err != nil {
		return SubscriptionsPage{}, err
	}
	return decodeSubscriptions(op, status, body)
}

// decodeSubscriptions accepts both the paged {"data": {...}} and the unpaged
// {"users": [...]} shape; the unpaged one is a single last page.
func decodeSubscriptions(op string, status int, body []byte) (SubscriptionsPage, error) {
	var v struct {
		Users []User `json:"users"`
		Data  *struct {
			Next    *int   `json:"next"`
			MaxPage int    `json:"max_page"`
			Results []User `json:"results"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return SubscriptionsPage{}, badResponse(op, status, "body is not a list of users")
	}
	if v.Data != nil {
		return SubscriptionsPage{Users: nonNil(v.Data.Results), Next: v.Data.Next, MaxPage: v.Data.MaxPage}, nil
	}
	return SubscriptionsPage{Users: nonNil(v.Users)}, nil
}

// DeauthenticateUser removes a connection at Terra; Terra follows with a deauth webhook.
// An unknown user gives an error for which IsNotFound is true.
func (c *Client) DeauthenticateUser(ctx context.Context, userID string) error {
	const op = "deauthenticateUser"
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	q := url.Values{"user_id": {userID}}
	_, _, err := c.do(ctx, op, epDeauth, http.MethodDelete, c.cfg.BaseURL+"/auth/deauthenticateUser?"+q.Encode(), nil)
	return err
}

// RequestHistory asks Terra for one type of a user's data (activity, sleep, body, daily,
// nutrition, menstruation or athlete) over [start, end), delivered to the webhook
// destination (to_webhook=true): this call only gets Terra's acknowledgement. Terra allows
// at most 1,825 days a request and about 6,000 requested days per user an hour; over
// that it answers 429, an *APIError whose RetryAfter says how long to wait. An unknown
// user gives an error for which IsNotFound is true.
func (c *Client) RequestHistory(ctx context.Context, typ, userID string, start, end time.Time) error {
	const op = "requestHistory"
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	q := url.Values{
		"user_id":    {userID},
		"start_date": {strconv.FormatInt(start.Unix(), 10)},
		"end_date":   {strconv.FormatInt(end.Unix(), 10)},
		"to_webhook": {"true"},
	}
	_, _, err := c.do(ctx, op, epHistory, http.MethodGet, c.cfg.BaseURL+"/"+url.PathEscape(typ)+"?"+q.Encode(), nil)
	return err
}

// Integrations lists the providers Terra offers.
func (c *Client) Integrations(ctx context.Context) (Integrations, error) {
	const op = "integrations"
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	var in Integrations
	body, status, err := c.do(ctx, op, epIntegrations, http.MethodGet, c.cfg.BaseURL+"/integrations", nil)
	if err != nil {
		return in, err
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return in, badResponse(op, status, "body is not a list of integrations")
	}
	return in, nil
}

// do makes one call: attempts through the endpoint's circuit breaker, retried as
// Config says, and returns the body of a 2xx answer. Anything else is an *APIError or an
// error wrapping ErrUnavailable (ErrCircuitOpen too when the breaker refused the call).
func (c *Client) do(ctx context.Context, op, ep, method, target string, in any) ([]byte, int, error) {
	var payload []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, 0, fmt.Errorf("terra %s: encode request: %w", op, err)
		}
		payload = b
	}
	for n := 1; ; n++ {
		a, err := c.call(ctx, op, ep, method, target, payload)
		if err == nil {
			return a.body, a.status, nil
		}
		if n > c.cfg.Retries || !retryable(ctx, err) {
			return nil, a.status, err
		}
		wait := c.backoff(n)
		if ra, ok := RetryAfter(err); ok {
			wait = max(wait, ra)
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			c.log.WarnContext(ctx, "terra: not retrying, the wait would pass the deadline",
				"op", op, "attempt", n, "status", a.status, "wait", wait.Round(time.Millisecond))
			return nil, a.status, err
		}
		c.log.WarnContext(ctx, "terra: retrying", "op", op, "attempt", n, "status", a.status,
			"wait", wait.Round(time.Millisecond), "err", err)
		if !sleep(ctx, wait) {
			return nil, a.status, err
		}
	}
}

// attempt sends one request, bounded by Config.AttemptTimeout, and returns the body of a
// 2xx answer.
func (c *Client) attempt(ctx context.Context, op, method, target string, payload []byte) (a answer, err error) {
	if c.cfg.Observe != nil {
		start := time.Now()
		defer func() { c.cfg.Observe(op, a.status, err, time.Since(start)) }()
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
	defer cancel()

	var reqBody io.Reader
	if payload != nil {
		reqBody = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, reqBody)
	if err != nil {
		return answer{}, fmt.Errorf("terra %s: %w", op, err)
	}
	req.Header.Set("dev-id", c.cfg.DevID)
	req.Header.Set("x-api-key", c.cfg.APIKey)
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return answer{}, c.unavailable(ctx, op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return answer{status: resp.StatusCode}, c.unavailable(ctx, op, err)
	}
	c.log.DebugContext(ctx, "terra call", "op", op, "method", method, "status", resp.StatusCode,
		"duration", time.Since(start).Round(time.Millisecond))

	a = answer{status: resp.StatusCode}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if len(body) > maxBody {
			body = nil
		}
		return a, parseAPIError(op, resp, body, time.Now(), c.cfg.APIKey, c.cfg.DevID)
	}
	if len(body) > maxBody {
		return a, badResponse(op, resp.StatusCode, "body larger than 1 MiB")
	}
	a.body = body
	return a, nil
}

// unavailable drops *url.Error's "Get <url>:" prefix (the query holds user ids) and
// keeps the context's cause, so a caller's cancellation stays visible.
func (c *Client) unavailable(ctx context.Context, op string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%w)", err, ctxErr)
	}
	if msg := scrub(err.Error(), []string{c.cfg.APIKey, c.cfg.DevID}); msg != err.Error() {
		// Unlikely, but a transport error must never carry a credential.
		err = &scrubbedError{msg: msg, err: err}
	}
	return unavailable(op, err)
}

// scrubbedError replaces an error's text while keeping its chain for errors.Is.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func badResponse(op string, status int, msg string) *APIError {
	return &APIError{Op: op, StatusCode: status, Message: msg}
}

func nonNil(users []User) []User {
	if users == nil {
		return []User{}
	}
	return users
}
