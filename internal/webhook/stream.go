package webhook

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/terragate/terragate/internal/metrics"
	"github.com/terragate/terragate/internal/spool"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
)

// incoming is a body as read: whole in head when it is at most InlineBody bytes, else staged
// in spool with its first InlineBody bytes in head.
type incoming struct {
	head  []byte
	spool *spool.Spool
	size  int64
	sum   [sha256.Size]byte
}

// errStaging is a failure to stage a large body (a full or broken disk): Terra retries.
var errStaging = errors.New("staging the body failed")

// readBuffer is how much of the body is read at a time.
const readBuffer = 64 << 10

// read reads the body once: the signature (v) and the SHA-256 are computed as it passes,
// and past InlineBody it goes to a spool in compressed pieces. Memory stays bounded by
// InlineBody and the spool's two pieces, whatever the body's size.
func (h *Handler) read(r io.Reader, v *terra.Verifier) (in incoming, err error) {
	sum := sha256.New()
	buf := make([]byte, readBuffer)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			p := buf[:n]
			v.Write(p)
			sum.Write(p)
			in.size += int64(n)
			switch {
			case in.spool != nil:
				if _, err := in.spool.Write(p); err != nil {
					return in, fmt.Errorf("%w: %w", errStaging, err)
				}
			case len(in.head)+n <= InlineBody:
				in.head = append(in.head, p...)
			default:
				if in.spool, err = spool.New(h.spoolDir); err != nil {
					return in, fmt.Errorf("%w: %w", errStaging, err)
				}
				if _, err := in.spool.Write(in.head); err != nil {
					return in, fmt.Errorf("%w: %w", errStaging, err)
				}
				if _, err := in.spool.Write(p); err != nil {
					return in, fmt.Errorf("%w: %w", errStaging, err)
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return in, rerr
		}
	}
	if in.spool != nil {
		if err := in.spool.Finish(); err != nil {
			return in, fmt.Errorf("%w: %w", errStaging, err)
		}
	}
	copy(in.sum[:], sum.Sum(nil))
	return in, nil
}

// serveLarge stores a verified body larger than InlineBody: a data event, never decoded
// whole. Its type is read from its first bytes; its pieces go to the store in the short
// transaction that records it (nothing of it without a destination that wants its type).
func (h *Handler) serveLarge(w http.ResponseWriter, r *http.Request, in incoming, signedAt time.Time, secretIndex int) {
	typ, ok := leadingType(in.head)
	if !ok {
		h.metrics.Webhook("", metrics.WebhookRefused)
		writeJSON(w, http.StatusBadRequest, fmt.Sprintf("malformed event: no \"type\" in the first %d bytes", InlineBody))
		return
	}
	// The decoder classifies the type as it would the whole event; a connection event is
	// small, and one over InlineBody is refused rather than decoded whole.
	ev, err := h.decode(fmt.Appendf(nil, `{"type":%q}`, typ))
	if err != nil || ev.Kind != store.EventIgnored || terra.IsConnectionEvent(typ) {
		h.metrics.Webhook("", metrics.WebhookRefused)
		writeJSON(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("a %q event larger than %d bytes is refused: only data events are streamed", typ, InlineBody))
		return
	}
	d := h.delivery(r, in, signedAt)
	d.Event = ev
	h.forRelay(r, &d, in.spool)
	h.store(w, r, d, nil, signedAt, secretIndex)
}

// leadingType finds the top-level "type" of a JSON object in its first bytes, reading
// token by token (a skipped value is never built).
func leadingType(head []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(head))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	depth := 0
	key := true // at depth 0, the next string is a key
	for {
		t, err := dec.Token()
		if err != nil {
			return "", false
		}
		switch t := t.(type) {
		case json.Delim:
			if t == '{' || t == '[' {
				depth++
			} else {
				depth--
				if depth < 0 {
					return "", false
				}
				if depth == 0 {
					key = true
				}
			}
		case string:
			if depth == 0 && key {
				if t == "type" {
					v, err := dec.Token()
					s, isString := v.(string)
					if err != nil || !isString || s == "" || len(s) > 64 {
						return "", false
					}
					return s, true
				}
				key = false
				continue
			}
			if depth == 0 {
				key = true
			}
		default:
			if depth == 0 {
				key = true
			}
		}
	}
}
