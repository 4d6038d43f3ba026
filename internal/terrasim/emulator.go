// Package terrasim is an emulator of the parts of Terra that terragate uses: the API
// (legacy /v2 and 2026 /api/v2 bases, with their error shapes), the widget session
// endpoints, mobile SDK tokens, a server-rendered stand-in for the widget, signed webhooks
// with retries, and controls to play the provider side (disconnects, re-authentications,
// revoked access, permission changes), a phone connecting through the mobile SDK, and to
// inject faults. Teams develop against it offline and the
// gateway's demo mode mounts it under a path prefix.
package terrasim

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/terragate/terragate/internal/terra"
)

// Config configures an Emulator. Every field is optional.
type Config struct {
	// DevID and APIKey are the credentials callers must send. When either is empty any
	// non-empty value is accepted in its place.
	DevID, APIKey string
	// WebhookURL receives the signed events; empty means events are recorded in
	// Deliveries but not sent.
	WebhookURL string
	// WebhookSecret signs the events (terra-signature).
	WebhookSecret string
	// PublicURL is the base URL browsers reach the emulator at, e.g.
	// http://localhost:8080/terra; widget URLs are PublicURL+"/widget/session/<id>".
	// Empty means it is derived from each request (host and any stripped path prefix).
	PublicURL string
	// ExpiresIn is the widget session lifetime in seconds (default 900).
	ExpiresIn int
	// LegacyGone makes the legacy generateWidgetSession answer 410 Gone, as Terra does
	// for accounts created after 3 September 2026.
	LegacyGone bool
	// LegacyOnly makes the new widget endpoint (both spellings) answer 404, as it does for
	// an account Terra has not moved to it yet: the legacy endpoint is the only one.
	LegacyOnly bool
	// RetryDelays is the webhook retry backoff: one retry per entry, then give up
	// (default 1s, 2s, 5s, 15s, 30s, 60s).
	RetryDelays []time.Duration
	// HTTPClient posts webhooks (default: a client of the emulator's own).
	HTTPClient *http.Client
	// Logger receives the emulator's log lines (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// DefaultRetryDelays is the webhook backoff used when Config.RetryDelays is nil.
var DefaultRetryDelays = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute,
}

// webhookTimeout is how long Terra waits for a 2xx before counting an attempt as failed.
const webhookTimeout = 8 * time.Second

// maxRequestBody caps request bodies the emulator reads.
const maxRequestBody = 1 << 20

// Request is one recorded API call. Credentials are never recorded.
type Request struct {
	Time   time.Time      `json:"time"`
	Method string         `json:"method"`
	Path   string         `json:"path"`
	Query  url.Values     `json:"query,omitempty"`
	Body   map[string]any `json:"body,omitempty"` // the decoded JSON object, if the body was one
}

// Fault makes the next Times calls to one API path answer abnormally. Delay comes first;
// then the first of Hang, Reset, Garbage and Status that is set decides the answer, and
// with none of them set the call is answered normally.
type Fault struct {
	// Status and Body (with ContentType and Header) replace the answer. A zero Status
	// with a Delay means "slow, then the normal answer".
	Status      int
	Body        string
	ContentType string
	Header      http.Header
	// Delay holds the answer back; a caller that gives up earlier sees a timeout.
	Delay time.Duration
	// Hang never answers: the call stays open until the caller gives up (or the
	// emulator is closed, which drops the connection).
	Hang bool
	// Reset drops the TCP connection without any HTTP answer, as a crashing server or a
	// load balancer cutting a connection does.
	Reset bool
	// Garbage answers 200 with a JSON content type but a body that is not JSON (an
	// answer cut off halfway); Header is sent with it.
	Garbage bool
	// Times is how many calls the fault applies to (at least 1).
	Times int
}

// Emulator is a Terra stand-in. It is an http.Handler, safe for concurrent use; Close
// stops its webhook deliveries.
type Emulator struct {
	cfg   Config
	log   *slog.Logger
	hc    *http.Client
	owned *http.Transport // closed by Close when the emulator made its own client
	mux   *http.ServeMux

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // webhook deliveries

	mu         sync.Mutex
	closed     bool
	seq        int
	users      map[string]*userRecord
	sessions   map[string]*session
	tokens     map[string]*sdkToken // mobile SDK tokens by value
	created    int                  // sessions created, for pruning
	requests   []Request
	faults     map[string][]*Fault
	deliveries []*Delivery
	grants     map[string][]dataGrant // requested days per user in the rolling hour
}

type userRecord struct {
	seq  int // creation order, which paging follows
	user terra.User
}

// New returns an Emulator with no users.
func New(cfg Config) *Emulator {
	if cfg.ExpiresIn <= 0 {
		cfg.ExpiresIn = 900
	}
	if cfg.RetryDelays == nil {
		cfg.RetryDelays = DefaultRetryDelays
	}
	cfg.RetryDelays = slices.Clone(cfg.RetryDelays)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	e := &Emulator{
		cfg:      cfg,
		log:      cfg.Logger,
		hc:       cfg.HTTPClient,
		users:    map[string]*userRecord{},
		sessions: map[string]*session{},
		tokens:   map[string]*sdkToken{},
		faults:   map[string][]*Fault{},
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.hc == nil {
		e.owned = http.DefaultTransport.(*http.Transport).Clone()
		e.hc = &http.Client{Transport: e.owned}
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.routes()
	return e
}

// ServeHTTP serves the API, the widget pages and the /_emulator/ controls.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mux.ServeHTTP(w, r)
}

// Close stops pending webhook deliveries (no more retries) and waits for them to end.
// Events raised after Close are recorded but not sent.
func (e *Emulator) Close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
	if e.owned != nil {
		e.owned.CloseIdleConnections()
	}
}

// What the emulator remembers, so that a copy left running for days (or under a load test)
// does not grow without end: the last recordedRequests API calls, and sessions until a day
// after they expired (after that a session is unknown rather than expired).
const (
	recordedRequests = 10_000
	sessionRetention = 24 * time.Hour
	pruneEvery       = 1024 // sessions created between two prunings
)

// Requests returns the most recent API calls (at most 10,000), oldest first.
func (e *Emulator) Requests() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.requests[max(0, len(e.requests)-recordedRequests):])
}

// Fail makes the next f.Times calls to path (as the emulator sees it, e.g.
// "/v2/auth/generateWidgetSession") answer as f says. Faults on one path queue up.
func (e *Emulator) Fail(path string, f Fault) {
	if f.Times < 1 {
		f.Times = 1
	}
	f.Header = f.Header.Clone()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults[path] = append(e.faults[path], &f)
}

// takeFault consumes one use of the first fault queued for path.
func (e *Emulator) takeFault(path string) (Fault, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	q := e.faults[path]
	if len(q) == 0 {
		return Fault{}, false
	}
	f := q[0]
	f.Times--
	if f.Times <= 0 {
		q = q[1:]
		if len(q) == 0 {
			delete(e.faults, path)
		} else {
			e.faults[path] = q
		}
	}
	return *f, true
}

func (e *Emulator) now() time.Time { return e.cfg.Now() }

// baseURL is where browsers reach the emulator: PublicURL, or the request's host plus
// whatever prefix http.StripPrefix removed (RequestURI keeps the original path).
func (e *Emulator) baseURL(r *http.Request) string {
	if e.cfg.PublicURL != "" {
		return e.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	prefix := ""
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
		if full, stripped := u.EscapedPath(), r.URL.EscapedPath(); strings.HasSuffix(full, stripped) {
			prefix = strings.TrimSuffix(full, stripped)
		}
	}
	return scheme + "://" + r.Host + prefix
}

// errStyle is how an endpoint family shapes its errors.
type errStyle int

const (
	// legacyErrors: {"status":"error","message":"..."} (the /v2 base and the widget).
	legacyErrors errStyle = iota
	// problemErrors: RFC 9457 application/problem+json (the 2026 /api/v2 base).
	problemErrors
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, r *http.Request, style errStyle, code int, msg string) {
	if style == problemErrors {
		b, _ := json.Marshal(map[string]string{
			"type":     "about:blank",
			"title":    strings.ToLower(http.StatusText(code)),
			"instance": r.URL.RequestURI(),
			"detail":   msg,
		})
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(code)
		_, _ = w.Write(append(b, '\n'))
		return
	}
	writeJSON(w, code, map[string]string{"status": "error", "message": msg})
}

// checkCredentials answers 401 for missing and 403 for wrong credentials, as Terra does.
func (e *Emulator) checkCredentials(r *http.Request) (int, string) {
	dev, key := r.Header.Get("dev-id"), r.Header.Get("x-api-key")
	if dev == "" || key == "" {
		return http.StatusUnauthorized, "dev-id or x-api-key headers are missing"
	}
	if !matches(dev, e.cfg.DevID) || !matches(key, e.cfg.APIKey) {
		return http.StatusForbidden, "invalid dev-id or x-api-key"
	}
	return 0, ""
}

func matches(got, want string) bool {
	if want == "" {
		return true
	}
	// Hashing first makes the comparison independent of the lengths too.
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// readBody reads a request body up to maxRequestBody; ok is false when it is larger.
func readBody(r *http.Request) (body []byte, ok bool) {
	if r.Body == nil {
		return nil, true
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil || len(b) > maxRequestBody {
		return nil, false
	}
	return b, true
}

// record keeps an API call for Requests; headers (and so credentials) are left out.
func (e *Emulator) record(r *http.Request, body []byte) {
	req := Request{Time: e.now(), Method: r.Method, Path: r.URL.Path}
	if q := r.URL.Query(); len(q) > 0 {
		req.Query = q
	}
	var obj map[string]any
	if json.Unmarshal(body, &obj) == nil {
		req.Body = obj
	}
	e.mu.Lock()
	// Trimmed in halves rather than per call, so recording stays O(1) amortised.
	if len(e.requests) >= 2*recordedRequests {
		e.requests = slices.Clone(e.requests[len(e.requests)-recordedRequests:])
	}
	e.requests = append(e.requests, req)
	e.mu.Unlock()
}

// pruneSessionsLocked forgets the sessions that expired over sessionRetention ago.
func (e *Emulator) pruneSessionsLocked() {
	cutoff := e.now().Add(-sessionRetention)
	for id, s := range e.sessions {
		if s.expiresAt.Before(cutoff) {
			delete(e.sessions, id)
		}
	}
}

// sleep waits d unless the request or the emulator ends first.
func (e *Emulator) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-e.ctx.Done():
		return false
	}
}
