package demo

import (
	"html/template"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// RelayPath is the demo's own relay destination: a receiver that lists what terragate
// relayed to it.
const RelayPath = "/demo/relay"

// Bounds of what the receiver keeps: it is a page for a person, not a store.
const (
	relayKept    = 100
	relayMaxBody = 64 << 20
)

// RelayReceiver plays an app's backend receiving terragate's relay: POST verifies a
// delivery the Standard Webhooks way (with the spec's own library) and remembers its
// headers, never its body (health data); GET lists the last deliveries.
type RelayReceiver struct {
	wh *standardwebhooks.Webhook

	mu  sync.Mutex
	got []relayed
}

type relayed struct {
	At        time.Time
	Type      string
	WebhookID string
	Reference string
	Bytes     int64
}

// NewRelayReceiver returns a receiver that verifies with secret ("whsec_...").
func NewRelayReceiver(secret string) (*RelayReceiver, error) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, err
	}
	return &RelayReceiver{wh: wh}, nil
}

// ServeHTTP receives deliveries (POST) and shows the list (GET).
func (rc *RelayReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		body, err := io.ReadAll(io.LimitReader(r.Body, relayMaxBody+1))
		if err != nil || len(body) > relayMaxBody {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := rc.wh.Verify(body, r.Header); err != nil {
			http.Error(w, "signature does not verify", http.StatusUnauthorized)
			return
		}
		rc.mu.Lock()
		rc.got = append(rc.got, relayed{
			At: time.Now().UTC(), Type: r.Header.Get("terragate-event-type"), WebhookID: r.Header.Get("webhook-id"),
			Reference: r.Header.Get("terra-reference"), Bytes: int64(len(body)),
		})
		if len(rc.got) > relayKept {
			rc.got = slices.Clone(rc.got[len(rc.got)-relayKept:])
		}
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case http.MethodGet, http.MethodHead:
		rc.mu.Lock()
		list := slices.Clone(rc.got)
		rc.mu.Unlock()
		slices.Reverse(list) // newest first
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := relayPage.Execute(w, list); err != nil {
			http.Error(w, "page failed", http.StatusInternalServerError)
		}
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

var relayPage = template.Must(template.New("relay").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>terragate demo: relay receiver</title></head>
<body>
<h1>Relay receiver</h1>
<p>terragate relays every Terra event it stores to this page's own address, as it would to your
backends (RELAY_DESTINATIONS); each delivery was verified the Standard Webhooks way. Bodies
are not kept. Reload to see new ones.</p>
<table>
<thead><tr><th>received</th><th>event type</th><th>webhook-id</th><th>terra-reference</th><th>bytes</th><th></th></tr></thead>
<tbody>
{{range .}}<tr><td>{{.At.Format "15:04:05"}}</td><td>{{.Type}}</td><td>{{.WebhookID}}</td><td>{{.Reference}}</td><td>{{.Bytes}}</td><td>verified</td></tr>
{{else}}<tr><td colspan="6">nothing yet: connect a provider</td></tr>
{{end}}</tbody>
</table>
</body></html>
`))
