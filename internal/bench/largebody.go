package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/terragate/terragate/internal/terra"
)

// LargeBodyChunk is the size of the chunks of the large-body scenario: 30 MiB, three times
// the ~10 MB Terra cuts large requests into, as issue 13's target says.
const LargeBodyChunk = 30 << 20

// relaySecret signs the large-body scenario's relay deliveries.
const relaySecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// LargeActivity is an activity event of about size bytes: heart-rate samples that vary as
// real ones do, so that it compresses as Terra's data does rather than to nothing.
func LargeActivity(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 64)
	b.WriteString(`{"type":"activity","user":{"user_id":"bench-big","provider":"GARMIN","reference_id":"bench"},"data":[{"heart_rate_data":{"detailed":{"hr_samples":[`)
	for i := 0; b.Len() < size-64; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"timestamp":"2026-07-%02dT%02d:%02d:%02d+00:00","bpm":%d}`, 1+(i/86400)%28, (i/3600)%24, (i/60)%60, i%60, 50+(i*7919)%97)
	}
	b.WriteString(`]}}}],"version":"2022-03-16"}`)
	return b.Bytes()
}

// Sink is a relay destination on loopback that hashes each body as it arrives (never
// holding it) and reports it on Got.
type Sink struct {
	URL string
	Got chan [sha256.Size]byte
	srv *http.Server
}

// StartSink listens on loopback.
func StartSink() (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Sink{URL: "http://" + ln.Addr().String(), Got: make(chan [sha256.Size]byte, 64)}
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var sum [sha256.Size]byte
		copy(sum[:], h.Sum(nil))
		s.Got <- sum
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the sink.
func (s *Sink) Close() { _ = s.srv.Close() }

// LargeBodies is the large-body fixture: a gateway relaying activity to two sinks.
type LargeBodies struct {
	GW    *Gateway
	Sinks [2]*Sink
	Body  []byte
	Sum   [sha256.Size]byte
	r     *Runner
	seq   int
}

// StartLargeBodies starts two sinks and a gateway on databaseURL relaying to both.
func (r *Runner) StartLargeBodies(ctx context.Context, databaseURL string) (*LargeBodies, error) {
	l := &LargeBodies{r: r, Body: LargeActivity(LargeBodyChunk)}
	l.Sum = sha256.Sum256(l.Body)
	var dests []string
	for i := range l.Sinks {
		s, err := StartSink()
		if err != nil {
			l.Close()
			return nil, err
		}
		l.Sinks[i] = s
		dests = append(dests, fmt.Sprintf(`{"name":"sink-%d","url":"%s","events":["activity"],"secret":"%s"}`, i, s.URL, relaySecret))
	}
	gw, err := r.startGateway(ctx, databaseURL, map[string]string{"RELAY_DESTINATIONS": "[" + strings.Join(dests, ",") + "]"})
	if err != nil {
		l.Close()
		return nil, err
	}
	l.GW = gw
	return l, nil
}

// Close stops the gateway and the sinks.
func (l *LargeBodies) Close() {
	if l.GW != nil {
		_ = l.GW.Stop()
	}
	for _, s := range l.Sinks {
		if s != nil {
			s.Close()
		}
	}
}

// Ingest posts n chunks of one request at once (distinct trace ids, one terra-reference)
// and returns each one's time to acknowledge.
func (l *LargeBodies) Ingest(ctx context.Context, n int) ([]time.Duration, error) {
	l.seq++
	// Unique across gateways on one database: a repeated trace id would be a duplicate.
	ref := "bench-ref-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.Itoa(l.seq)
	took := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			start := time.Now()
			errs[i] = l.post(ctx, fmt.Sprintf("%s:chunk:%d", ref, i), ref)
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	return took, errors.Join(errs...)
}

func (l *LargeBodies) post(ctx context.Context, trace, ref string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.GW.URL+"/webhooks/terra", bytes.NewReader(l.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("terra-signature", terra.Sign([]byte(WebhookSecret), time.Now(), l.Body))
	req.Header.Set("X-Terra-Trace-Id", trace)
	req.Header.Set("terra-reference", ref)
	resp, err := l.r.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return check(resp, http.StatusOK)
}

// Relayed waits until each sink has n bodies, and checks each is the chunk byte for byte.
func (l *LargeBodies) Relayed(ctx context.Context, n int) error {
	for _, s := range l.Sinks {
		for range n {
			select {
			case sum := <-s.Got:
				if sum != l.Sum {
					return errors.New("a sink got a body that is not Terra's byte for byte")
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// PeakRSS is the process's peak resident memory so far (VmHWM), in bytes.
func (g *Gateway) PeakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}
