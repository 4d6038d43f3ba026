package terrasim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"

	"github.com/google/uuid"
	"github.com/terragate/terragate/internal/terra"
)

// eventVersion is the payload schema version Terra stamps on its events.
const eventVersion = "2022-03-16"

// Delivery is the bookkeeping of one webhook event.
type Delivery struct {
	Type      string `json:"type"`
	TraceID   string `json:"trace_id"`  // X-Terra-Trace-Id, the same on every attempt
	Reference string `json:"reference"` // terra-reference
	Attempts  int    `json:"attempts"`
	// LastStatus is the receiver's last HTTP status, 0 when it gave none.
	LastStatus int    `json:"last_status"`
	LastError  string `json:"last_error,omitempty"`
	Delivered  bool   `json:"delivered"`
	// Done is true once the delivery succeeded, gave up or was stopped by Close.
	Done    bool            `json:"done"`
	Payload json.RawMessage `json:"payload"`
}

// Deliveries returns every webhook event raised so far, oldest first.
func (e *Emulator) Deliveries() []Delivery {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Delivery, len(e.deliveries))
	for i, d := range e.deliveries {
		out[i] = *d
		out[i].Payload = slices.Clone(d.Payload)
	}
	return out
}

// emitLocked records an event and starts its delivery in the background. e.mu is held,
// which also keeps wg.Add ordered before Close's Wait.
func (e *Emulator) emitLocked(payload map[string]any) {
	e.emitTracedLocked(payload, uuid.NewString(), uuid.NewString())
}

// emitTracedLocked is emitLocked with the X-Terra-Trace-Id and terra-reference given:
// data events answer a request's reference, and chunks carry <id>:chunk:<n>.
func (e *Emulator) emitTracedLocked(payload map[string]any, traceID, reference string) {
	body, err := json.Marshal(payload)
	if err != nil {
		e.log.Error("terrasim: encode event", "err", err)
		return
	}
	typ, _ := payload["type"].(string)
	d := &Delivery{Type: typ, TraceID: traceID, Reference: reference, Payload: body}
	e.deliveries = append(e.deliveries, d)
	switch {
	case e.closed:
		d.Done, d.LastError = true, "emulator closed"
		return
	case e.cfg.WebhookURL == "":
		d.Done, d.LastError = true, "no webhook URL configured"
		e.log.Info("terrasim: event not sent: no webhook URL", "type", typ, "trace_id", d.TraceID)
		return
	}
	e.wg.Add(1)
	go e.deliver(d, body)
}

// deliver posts one event until the receiver answers 2xx, retrying along RetryDelays.
func (e *Emulator) deliver(d *Delivery, body []byte) {
	defer e.wg.Done()
	for attempt := 0; ; attempt++ {
		status, err := e.post(d, body)
		ok := status >= 200 && status < 300
		e.mu.Lock()
		d.Attempts++
		d.LastStatus = status
		d.LastError = ""
		if err != nil {
			d.LastError = err.Error()
		}
		d.Delivered, d.Done = ok, ok
		e.mu.Unlock()
		if ok {
			e.log.Debug("terrasim: webhook delivered", "type", d.Type, "trace_id", d.TraceID, "attempts", attempt+1)
			return
		}
		if attempt >= len(e.cfg.RetryDelays) || !e.sleep(e.ctx, e.cfg.RetryDelays[attempt]) {
			e.mu.Lock()
			d.Done = true
			e.mu.Unlock()
			if e.ctx.Err() == nil {
				e.log.Warn("terrasim: webhook delivery failed; giving up",
					"type", d.Type, "trace_id", d.TraceID, "attempts", attempt+1, "last_status", status)
			}
			return
		}
	}
}

// post makes one delivery attempt, signed at send time.
func (e *Emulator) post(d *Delivery, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(e.ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	sig := terra.Sign([]byte(e.cfg.WebhookSecret), e.now(), body)
	// Lower-case names as Terra sends them (Header.Set would canonicalise).
	req.Header["terra-signature"] = []string{sig}
	req.Header["terra-reference"] = []string{d.Reference}
	req.Header.Set("X-Terra-Signature", sig)
	req.Header.Set("X-Terra-Trace-Id", d.TraceID)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "terrasim")
	resp, err := e.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}
