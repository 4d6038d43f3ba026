// Package webhook receives Terra's webhooks: raw body -> signature check -> decode -> store.
// The store records each delivery in its inbox in the same transaction as its effect, so a
// 2xx is only sent for what is durably kept.
package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/limit"
	"github.com/terragate/terragate/internal/metrics"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
)

// StoreDeadline bounds storing one delivery, so Terra always gets an answer within about a
// second.
const StoreDeadline = 900 * time.Millisecond

// InlineBody is the largest body held in memory and decoded whole. Connection events are a
// few hundred bytes; a larger body (a data event of up to WEBHOOK_MAX_BYTES) is streamed: its
// signature and hash computed as it is read, and the body staged in compressed pieces in a
// temp file (internal/spool), never whole in memory.
const InlineBody = 1 << 20

// DefaultMaxBytes is the largest body accepted unless WithMaxBytes says otherwise
// (WEBHOOK_MAX_BYTES).
const DefaultMaxBytes = 64 << 20

// Router names the relay destinations that want events of a type (none: the event is not
// relayed, and nothing of a data event's body is kept), and is told once deliveries to them
// are committed.
type Router interface {
	Route(eventType string) []string
	Enqueued(destinations []string)
}

// WithMaxBytes refuses bodies over n bytes with 413 (WEBHOOK_MAX_BYTES).
func WithMaxBytes(n int64) Option {
	return func(h *Handler) { h.maxBytes = n }
}

// WithSpoolDir stages large bodies in dir (default: the system's temp directory).
func WithSpoolDir(dir string) Option {
	return func(h *Handler) { h.spoolDir = dir }
}

// Option tunes New.
type Option func(*Handler)

// WithRelay enqueues every stored event for the destinations r names, in the transaction
// that stores it.
func WithRelay(r Router) Option {
	return func(h *Handler) { h.relay = r }
}

// Applier records a delivery in the inbox and applies it in one transaction: the store
// itself, or a service that also tells subscribers what changed.
type Applier interface {
	ApplyWebhook(ctx context.Context, d store.Delivery) (store.Outcome, error)
	RecordDeadLetter(ctx context.Context, d store.Delivery, reason string) (store.InboxEvent, error)
}

// Handler serves POST /webhooks/terra.
type Handler struct {
	metrics *metrics.Metrics // deliveries by type and outcome (nil: none)
	decode  Decoder

	deadline time.Duration // how long storing a delivery may take before 503
	secrets  [][]byte
	apply    Applier
	relay    Router // nil: nothing is relayed
	maxBytes int64  // larger bodies get 413
	spoolDir string // where large bodies are staged ("": the system's temp directory)
	log      *slog.Logger
	now      func() time.Time
}

// Decoder says what a verified body means for the store (connection.DecodeEvent): the
// handler knows Terra's signatures, not its events.
type Decoder func(body []byte) (store.Event, error)

// New returns a Handler verifying signatures with secrets: one, or several (while a secret
// is rotated, or when several Terra environments post to one URL), decoding bodies with
// decode and handing them to apply. It refuses an empty list: a webhook endpoint that
// cannot verify must not exist. m counts deliveries (nil: none).
func New(secrets []string, decode Decoder, apply Applier, m *metrics.Metrics, log *slog.Logger, opts ...Option) (*Handler, error) {
	h := &Handler{decode: decode, apply: apply, metrics: m, log: log, now: time.Now, deadline: StoreDeadline, maxBytes: DefaultMaxBytes}
	for _, o := range opts {
		o(h)
	}
	for _, s := range secrets {
		if s != "" {
			h.secrets = append(h.secrets, []byte(s))
		}
	}
	if len(h.secrets) == 0 {
		return nil, errors.New("webhook: a signing secret is required")
	}
	return h, nil
}

// verify checks the signature, computed by v as the body was read, against every secret. It
// reports which one matched, by index only: a secret never reaches a log line.
func (h *Handler) verify(v *terra.Verifier) (signedAt time.Time, index int, err error) {
	err = terra.ErrBadSignature
	for i := range h.secrets {
		at, e := v.Check(i, h.now())
		if e == nil {
			return at, i, nil
		}
		// "stale" says more than "bad", and "missing" more than either.
		if errors.Is(e, terra.ErrNoSignature) || (errors.Is(e, terra.ErrStaleSignature) && !errors.Is(err, terra.ErrNoSignature)) {
			err = e
		}
	}
	return time.Time{}, -1, err
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, "method not allowed: use POST")
		return
	}
	if r.ContentLength > h.maxBytes {
		// Said up front: refused before reading (and staging) any of it.
		writeJSON(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes (WEBHOOK_MAX_BYTES)", h.maxBytes))
		return
	}
	v := terra.NewVerifier(h.secrets, r.Header)
	in, err := h.read(http.MaxBytesReader(w, r.Body, h.maxBytes), v)
	if in.spool != nil {
		// Whatever happens next, the staged copy goes: stored pieces are in the store.
		defer in.spool.Close()
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeJSON(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes (WEBHOOK_MAX_BYTES)", h.maxBytes))
		case errors.Is(err, limit.ErrBodyTimeout):
			limit.RequestTimeout(w, r, limit.JSON)
		case errors.Is(err, errStaging):
			h.log.ErrorContext(r.Context(), "webhook not staged", "err", err, "trace_id", traceID(r))
			w.Header().Set("Retry-After", "5")
			writeJSON(w, http.StatusServiceUnavailable, "could not store the event; retry later")
		default:
			writeJSON(w, http.StatusBadRequest, "could not read body")
		}
		return
	}

	signedAt, secretIndex, err := h.verify(v)
	if err != nil {
		h.log.WarnContext(r.Context(), "webhook refused", "reason", signatureReason(err), "trace_id", traceID(r))
		h.metrics.Webhook("", metrics.WebhookRefused)
		writeJSON(w, http.StatusUnauthorized, "invalid signature: "+signatureReason(err))
		return
	}
	h.metrics.WebhookBytes(in.size)
	if in.spool != nil {
		h.serveLarge(w, r, in, signedAt, secretIndex)
		return
	}
	body := in.head

	d := h.delivery(r, in, signedAt)
	d.Body = body
	err = recovered(func() (err error) {
		d.Event, err = h.decode(body)
		return err
	})
	if errors.As(err, new(*panicError)) {
		// What a dead letter keeps when decoding never finished.
		d.Event = store.Event{Type: peekType(body), Kind: kindUndecoded}
	} else if err != nil {
		h.log.WarnContext(r.Context(), "webhook malformed", "err", err, "trace_id", traceID(r))
		h.metrics.Webhook("", metrics.WebhookRefused)
		writeJSON(w, http.StatusBadRequest, "malformed event: "+err.Error())
		return
	}
	h.forRelay(r, &d, nil)
	h.store(w, r, d, err, signedAt, secretIndex)
}

// store applies d (or records why it cannot be applied: decodeErr) and answers Terra.
func (h *Handler) store(w http.ResponseWriter, r *http.Request, d store.Delivery, err error, signedAt time.Time, secretIndex int) {

	// Terra waits about 8 s and throttles slow endpoints: a delivery that cannot be stored
	// quickly is refused with 503, and Terra's retry brings it back. Nothing is lost: the
	// transaction either committed (then the retry is a duplicate) or did not.
	deadline := time.Now().Add(h.deadline)
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	var out store.Outcome
	if err == nil {
		err = recovered(func() (err error) {
			out, err = h.apply.ApplyWebhook(ctx, d)
			return err
		})
	}
	var reason string
	var bug *panicError
	switch {
	case errors.As(err, &bug):
		// A bug, not bad data: Terra's retries would meet it for a day and then drop the
		// event. Keep it as a dead letter instead, replayable once the bug is fixed. The
		// panic's text stays in the log; the stored reason is generic.
		h.log.ErrorContext(r.Context(), "webhook panicked while decoding or applying", "type", d.Event.Type,
			"trace_id", d.TraceID, "panic", fmt.Sprint(bug.value), "stack", string(bug.stack))
		// Ending the context rolls back a transaction the panic left open (database/sql does
		// on cancellation), which frees SQLite's one writer for the dead letter.
		cancel()
		var cancelDead context.CancelFunc
		ctx, cancelDead = context.WithDeadline(r.Context(), deadline)
		defer cancelDead()
		reason = panicReason
	case errors.Is(err, store.ErrInvalid) && ctx.Err() == nil:
		// Retrying will not fix bad data: keep the delivery as a dead letter, visible to
		// service callers and replayable once the cause is fixed, and acknowledge it so
		// Terra moves on. The events behind it are not held up.
		reason = err.Error()
	}
	if reason != "" {
		dead, derr := h.apply.RecordDeadLetter(ctx, d, reason)
		switch {
		case derr == nil && dead.Outcome != store.InboxFailed:
			// Already in the inbox and applied (a panic after the commit): that stands.
			err, out = nil, store.Outcome{}
		case derr == nil:
			h.log.ErrorContext(r.Context(), "webhook dead-lettered", "type", d.Event.Type, "trace_id", d.TraceID, "inbox_id", dead.ID, "err", err)
			h.metrics.Webhook(d.Event.Type, metrics.WebhookError)
			h.enqueued(d)
			writeAnswer(w, answerDeadLetter)
			return
		default:
			err = derr
		}
	}
	if err != nil {
		h.log.ErrorContext(r.Context(), "webhook not stored", "type", d.Event.Type, "trace_id", d.TraceID, "err", err)
		h.metrics.Webhook(d.Event.Type, metrics.WebhookError)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, "could not store the event; retry later")
		return
	}
	h.metrics.Webhook(d.Event.Type, outcomeOf(d.Event.Kind, out))
	// Events are applied as they are stored, so the inbox's lag is how long after Terra
	// signed this attempt it was applied.
	h.metrics.ObserveDeliveryLag(h.now().Sub(signedAt))
	h.log.InfoContext(r.Context(), "webhook received", "type", d.Event.Type, "trace_id", d.TraceID,
		"duplicate", out.Duplicate, "users_changed", len(out.Users), "secret_index", secretIndex)
	if out.Duplicate {
		writeAnswer(w, answerDuplicate)
	} else {
		h.enqueued(d)
		writeAnswer(w, answerOK)
	}
}

// enqueued tells the relay that d's deliveries are committed.
func (h *Handler) enqueued(d store.Delivery) {
	if d.Relay != nil && len(d.Relay.Destinations) > 0 {
		h.relay.Enqueued(d.Relay.Destinations)
	}
}

// forRelay enqueues d for the destinations that want its type, with Terra's own headers. A
// data event (any type that is not a connection event) keeps its body only for the relay:
// its inbox row keeps none, and without a destination nothing of it is kept.
func (h *Handler) forRelay(r *http.Request, d *store.Delivery, pieces store.Pieces) {
	var dests []string
	if h.relay != nil {
		dests = h.relay.Route(d.Event.Type)
	}
	if len(dests) > 0 {
		d.Relay = &store.RelayEvent{
			Type:              d.Event.Type,
			TraceID:           d.TraceID,
			Reference:         header(r, "terra-reference"),
			OrderingTimestamp: header(r, "x-terra-ordering-timestamp"),
			Body:              d.Body,
			Pieces:            pieces,
			Destinations:      dests,
		}
	}
	if d.Event.Kind == store.EventIgnored {
		d.Body = nil
	}
}

// header is a Terra header passed on to the relay, trimmed and cut at 200 bytes.
func header(r *http.Request, name string) string {
	v := strings.TrimSpace(r.Header.Get(name))
	if len(v) > 200 {
		v = v[:200]
	}
	return v
}

// The 200 answers, as json.Encoder writes {"status": ..., "duplicate": ...}: built once, as
// every delivery sends one.
var (
	answerOK         = answer("ok", false)
	answerDuplicate  = answer("ok", true)
	answerDeadLetter = answer("dead_letter", false)
)

func answer(status string, duplicate bool) []byte {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(map[string]any{"status": status, "duplicate": duplicate}); err != nil {
		panic(err) // a map of a string and a bool always encodes
	}
	return b.Bytes()
}

// writeAnswer sends a 200 answer built by answer.
func writeAnswer(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// panicReason is a dead letter's reason when decoding or applying it panicked. The panic's
// own text could hold anything, so it is logged, not stored or shown.
const panicReason = "internal error while applying the event (a bug in terragate, logged with its trace id); replay it once fixed"

// kindUndecoded is the kind a dead letter records when a panic came before the event's kind
// was known; a replay decodes the body afresh.
const kindUndecoded store.EventKind = "undecoded"

// panicError is a panic caught while decoding or applying one delivery.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return "panic: " + fmt.Sprint(e.value) }

// recovered runs fn, turning a panic into a *panicError: one event that hits a bug must not
// take the request down with it, and must not be lost. http.ErrAbortHandler is net/http's
// own way to abort and goes on up.
func recovered(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return fn()
}

// peekType is the body's "type" as far as it can be read without decoding the event, for a
// dead letter whose decoding panicked: at most 64 bytes, "" when there is none.
func peekType(body []byte) string {
	var v struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &v) != nil || len(v.Type) > 64 {
		return ""
	}
	return v.Type
}

func outcomeOf(kind store.EventKind, out store.Outcome) string {
	switch {
	case out.Duplicate:
		return metrics.WebhookDuplicate
	case kind == store.EventIgnored:
		return metrics.WebhookIgnored
	case len(out.Users) == 0 && !out.SessionChanged:
		return metrics.WebhookUnchanged
	default:
		return metrics.WebhookApplied
	}
}

// dedupeKey identifies a delivery across Terra's retries: its trace id (traceID) when sent,
// else the body itself, by its SHA-256 (computed as it was read).
// delivery is what a verified request says of itself, before its body is kept or decoded:
// its dedupe key, Terra's trace id and the signed and received times.
func (h *Handler) delivery(r *http.Request, in incoming, signedAt time.Time) store.Delivery {
	trace := traceID(r)
	return store.Delivery{
		DedupeKey:  dedupeKey(trace, in.sum),
		TraceID:    trace,
		SignedAt:   signedAt.UTC(),
		ReceivedAt: h.now().UTC(),
		Source:     store.SourceWebhook,
	}
}

func dedupeKey(trace string, sum [sha256.Size]byte) string {
	if trace != "" {
		return "trace:" + trace
	}
	return "sha256:" + hex.EncodeToString(sum[:])
}

func traceID(r *http.Request) string {
	id := strings.TrimSpace(r.Header.Get("X-Terra-Trace-Id"))
	if len(id) > 200 {
		id = id[:200]
	}
	return id
}

func signatureReason(err error) string {
	switch {
	case errors.Is(err, terra.ErrNoSignature):
		return "missing signature header"
	case errors.Is(err, terra.ErrStaleSignature):
		return "timestamp outside the allowed window"
	default:
		return "signature does not match"
	}
}

func writeJSON(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
