// Package webhook receives Terra's webhooks: raw body -> signature check -> decode -> store.
// The store records each delivery in its inbox in the same transaction as its effect, so a
// 2xx is only sent for what is durably kept.
package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/metrics"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
)

// StoreDeadline bounds storing one delivery, so Terra always gets an answer within about a
// second.
const StoreDeadline = 900 * time.Millisecond

// MaxBody is the largest webhook body accepted. Connection events are a few hundred bytes;
// data events, which terragate ignores, can be larger and are refused with 413.
const MaxBody = 1 << 20

// Applier records a delivery in the inbox and applies it in one transaction: the store
// itself, or a service that also tells subscribers what changed.
type Applier interface {
	ApplyWebhook(ctx context.Context, d store.Delivery) (store.Outcome, error)
	RecordDeadLetter(ctx context.Context, d store.Delivery, reason string) (store.InboxEvent, error)
}

// Handler serves POST /webhooks/terra.
type Handler struct {
	// Metrics counts deliveries by type and outcome (nil: none).
	Metrics *metrics.Metrics

	deadline time.Duration // how long storing a delivery may take before 503
	secrets  [][]byte
	apply    Applier
	log      *slog.Logger
	now      func() time.Time
}

// New returns a Handler verifying signatures with secrets: one, or several separated by
// commas (while a secret is rotated, or when several Terra environments post to one URL).
// It refuses an empty list: a webhook endpoint that cannot verify must not exist.
func New(secrets string, apply Applier, log *slog.Logger) (*Handler, error) {
	list := Secrets(secrets)
	if len(list) == 0 {
		return nil, errors.New("webhook: a signing secret is required")
	}
	h := &Handler{apply: apply, log: log, now: time.Now, deadline: StoreDeadline}
	for _, s := range list {
		h.secrets = append(h.secrets, []byte(s))
	}
	return h, nil
}

// Secrets splits a comma-separated secret list, dropping empty entries.
func Secrets(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// verify checks the signature against every secret. It reports which one matched, by index
// only: a secret never reaches a log line.
func (h *Handler) verify(r *http.Request, body []byte) (signedAt time.Time, index int, err error) {
	err = terra.ErrBadSignature
	for i, secret := range h.secrets {
		at, e := terra.VerifySignature(secret, r.Header, body, h.now())
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
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, "body larger than 1 MiB")
			return
		}
		writeJSON(w, http.StatusBadRequest, "could not read body")
		return
	}

	signedAt, secretIndex, err := h.verify(r, body)
	if err != nil {
		h.log.WarnContext(r.Context(), "webhook refused", "reason", signatureReason(err), "trace_id", traceID(r))
		h.Metrics.Webhook("", metrics.WebhookRefused)
		writeJSON(w, http.StatusUnauthorized, "invalid signature: "+signatureReason(err))
		return
	}

	ev, err := terra.DecodeEvent(body)
	if err != nil {
		h.log.WarnContext(r.Context(), "webhook malformed", "err", err, "trace_id", traceID(r))
		h.Metrics.Webhook("", metrics.WebhookRefused)
		writeJSON(w, http.StatusBadRequest, "malformed event: "+err.Error())
		return
	}

	d := store.Delivery{
		DedupeKey:  dedupeKey(r, body),
		TraceID:    traceID(r),
		SignedAt:   signedAt.UTC(),
		ReceivedAt: h.now().UTC(),
		Body:       body,
		Source:     store.SourceWebhook,
		Event:      ToStoreEvent(ev),
	}
	// Terra waits about 8 s and throttles slow endpoints: a delivery that cannot be stored
	// quickly is refused with 503, and Terra's retry brings it back. Nothing is lost: the
	// transaction either committed (then the retry is a duplicate) or did not.
	ctx, cancel := context.WithTimeout(r.Context(), h.deadline)
	defer cancel()
	out, err := h.apply.ApplyWebhook(ctx, d)
	if errors.Is(err, store.ErrInvalid) && ctx.Err() == nil {
		// Retrying will not fix bad data: keep the delivery as a dead letter, visible to
		// service callers and replayable once the cause is fixed, and acknowledge it so
		// Terra moves on. The events behind it are not held up.
		if dead, derr := h.apply.RecordDeadLetter(ctx, d, err.Error()); derr == nil {
			h.log.ErrorContext(r.Context(), "webhook dead-lettered", "type", ev.Type, "trace_id", d.TraceID, "inbox_id", dead.ID, "err", err)
			h.Metrics.Webhook(ev.Type, metrics.WebhookError)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "dead_letter", "duplicate": false})
			return
		} else {
			err = derr
		}
	}
	if err != nil {
		h.log.ErrorContext(r.Context(), "webhook not stored", "type", ev.Type, "trace_id", d.TraceID, "err", err)
		h.Metrics.Webhook(ev.Type, metrics.WebhookError)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, "could not store the event; retry later")
		return
	}
	h.Metrics.Webhook(ev.Type, outcomeOf(d.Event.Kind, out))
	// Events are applied as they are stored, so the inbox's lag is how long after Terra
	// signed this attempt it was applied.
	h.Metrics.ObserveDeliveryLag(h.now().Sub(signedAt))
	h.log.InfoContext(r.Context(), "webhook received", "type", ev.Type, "trace_id", d.TraceID,
		"duplicate", out.Duplicate, "users_changed", len(out.Users), "secret_index", secretIndex)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "ok", "duplicate": out.Duplicate})
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

// dedupeKey identifies a delivery across Terra's retries: its trace id when sent, else the
// body itself.
func dedupeKey(r *http.Request, body []byte) string {
	if id := traceID(r); id != "" {
		return "trace:" + id
	}
	sum := sha256.Sum256(body)
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
