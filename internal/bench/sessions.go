package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sessions is the createWidgetSession scenario's fixture: a gateway on its own SQLite file,
// a bare reverse proxy and (started on first use) the Apollo Server peer, all in front of
// the runner's emulator, and end-user tokens.
// Every request is for another end user: the same user asking twice gets the live session
// back without a Terra call, which would flatter the gateway.
type Sessions struct {
	r       *Runner
	gw      *Gateway
	proxy   *http.Server
	proxyTo string
	pprof   string // the gateway's METRICS_ADDR when it serves the profiler

	inProcessOnce  sync.Once
	inProcess      http.Handler
	closeInProcess func()
	inProcessErr   error

	apolloOnce sync.Once
	apollo     *Apollo
	apolloErr  error

	mu     sync.Mutex
	tokens []string
}

// NewSessions starts the fixture.
func (r *Runner) NewSessions(ctx context.Context) (*Sessions, error) {
	var extra map[string]string
	if r.Cfg.Profile != "" {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		extra = map[string]string{"METRICS_ADDR": addr, "DEBUG_PPROF": "true"}
	}
	gw, err := r.startGateway(ctx, r.sqliteURL("sessions"), extra)
	if err != nil {
		return nil, err
	}
	target, _ := url.Parse(r.Emu.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = Client(r.Cfg.InFlight).Transport
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = gw.Stop()
		return nil, err
	}
	s := &Sessions{r: r, gw: gw, pprof: extra["METRICS_ADDR"], proxy: &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}, proxyTo: "http://" + ln.Addr().String()}
	go func() { _ = s.proxy.Serve(ln) }()
	return s, nil
}

// Close stops the gateway, the proxy, the Apollo Server peer and the in-process handler.
func (s *Sessions) Close() error {
	if s.closeInProcess != nil {
		s.closeInProcess()
	}
	if s.apollo != nil {
		_ = s.apollo.Close()
	}
	_ = s.proxy.Close()
	return s.gw.Stop()
}

// Gateway is the fixture's terragate.
func (s *Sessions) Gateway() *Gateway { return s.gw }

// token is the token of end user number i, issued ahead in batches so that signing is
// not timed.
func (s *Sessions) token(i int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i >= len(s.tokens) {
		batch := make([]string, 0, 4096)
		for n := len(s.tokens); n < len(s.tokens)+cap(batch); n++ {
			batch = append(batch, fmt.Sprintf("bench-session-user-%d", n))
		}
		t, err := Tokens(batch)
		if err != nil {
			panic(err) // only a broken secret fails, and the secret is a constant
		}
		s.tokens = append(s.tokens, t...)
	}
	return s.tokens[i]
}

// Prepare issues the tokens of n more requests ahead of a measurement.
func (s *Sessions) Prepare(n int) { s.token(int(s.r.next.Load()) + n) }

// terraBody is what an app backend would post to Terra itself.
func terraBody(user string) []byte {
	return []byte(`{"reference_id":"` + user + `","providers":"OURA,GARMIN","language":"en"}`)
}

// Direct creates a session at Terra (the emulator) the way a backend without terragate
// would: the bare cost of the call terragate fronts.
func (s *Sessions) Direct(ctx context.Context, i int) error {
	return s.terraCall(ctx, s.r.Emu.URL, i)
}

// Proxied creates the session through a bare httputil.ReverseProxy in front of Terra.
func (s *Sessions) Proxied(ctx context.Context, i int) error {
	return s.terraCall(ctx, s.proxyTo, i)
}

func (s *Sessions) terraCall(ctx context.Context, base string, i int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/widget/session", bytes.NewReader(terraBody(fmt.Sprintf("bench-direct-%d", i))))
	if err != nil {
		return err
	}
	req.Header.Set("dev-id", DevID)
	req.Header.Set("x-api-key", APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		SessionID string `json:"session_id"`
		URL       string `json:"url"`
	}
	if err := check(resp, http.StatusOK); err != nil {
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.SessionID == "" {
		return fmt.Errorf("no session in Terra's answer: %v", err)
	}
	return nil
}

// createSession is the mutation an app sends.
var createSession = []byte(`{"query":"mutation($in: CreateWidgetSessionInput) { createWidgetSession(input: $in) { sessionId url expiresAt } }","variables":{"in":{"providers":["OURA","GARMIN"],"language":"en"}}}`)

// ThroughGateway creates the session through terragate, as an app does.
func (s *Sessions) ThroughGateway(ctx context.Context, i int) error {
	return postGraphQL(ctx, s.r.client, s.gw.URL, s.token(i), createSession, "createWidgetSession")
}

// Apollo starts the Apollo Server peer on first use and returns it, or why it could not
// start (an errNoApollo error when it is not installed).
func (s *Sessions) Apollo(ctx context.Context) (*Apollo, error) {
	s.apolloOnce.Do(func() { s.apollo, s.apolloErr = StartApollo(ctx, s.r.Emu.URL) })
	return s.apollo, s.apolloErr
}

// ThroughApollo creates the session through the Apollo Server peer, with the same request
// and the same check of the answer as ThroughGateway.
func (s *Sessions) ThroughApollo(ctx context.Context, i int) error {
	a, err := s.Apollo(ctx)
	if err != nil {
		return err
	}
	return postGraphQL(ctx, s.r.client, a.URL, s.token(i), createSession, "createWidgetSession")
}

// InProcess creates the session through terragate's whole handler chain in this process,
// built on first use over a SQLite file of its own, with no network in front of it (Terra
// is still called over loopback): for allocations per request, alongside Direct's.
func (s *Sessions) InProcess(ctx context.Context, i int) error {
	s.inProcessOnce.Do(func() {
		s.inProcess, s.closeInProcess, s.inProcessErr = GraphQLHandler(ctx, s.r.sqliteURL("sessions-inprocess"), s.r.Emu.URL)
	})
	if s.inProcessErr != nil {
		return s.inProcessErr
	}
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/graphql", bytes.NewReader(createSession))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token(i))
	rec := httptest.NewRecorder()
	s.inProcess.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), `"errors"`) {
		return fmt.Errorf("in-process GraphQL answered %d %.300s", rec.Code, rec.Body.String())
	}
	return nil
}

// postGraphQL posts one operation and checks it answered data for field without errors.
func postGraphQL(ctx context.Context, c *http.Client, base, token string, body []byte, field string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := check(resp, http.StatusOK); err != nil {
		return err
	}
	if bytes.Contains(raw, []byte(`"errors"`)) || !bytes.Contains(raw, []byte(`"`+field+`"`)) {
		return errors.New("GraphQL answered " + string(raw[:min(len(raw), 300)]))
	}
	return nil
}

// SessionRows measures createWidgetSession: latency at about one request in flight
// (open model at Cfg.SessionRate) directly at Terra and through terragate, then
// throughput at Cfg.InFlight in flight (closed model) through a bare reverse proxy, the
// Apollo Server peer and terragate. Without the peer installed the peer's row says so,
// except in CI, where that fails the run.
func (r *Runner) SessionRows(ctx context.Context) ([]Row, error) {
	s, err := r.NewSessions(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	// Started ahead, so that CI fails at once without it; idle, it takes nothing from the
	// latency runs.
	_, noApollo := s.Apollo(ctx)
	if noApollo != nil {
		if !errors.Is(noApollo, errNoApollo) || os.Getenv("CI") == "true" {
			return nil, fmt.Errorf("createWidgetSession: %w", noApollo)
		}
		r.progress("Apollo Server figures left out: %v", noApollo)
	}
	c := r.Cfg
	var d50, d99, t50, t99, add50, add99, dl99, tl99 []float64
	for round := range c.Rounds {
		r.progress("createWidgetSession latency, round %d: direct and through terragate at %.0f/s", round+1, c.SessionRate)
		direct := Open(ctx, c.SessionRate, 64, c.WarmUp, c.Duration, &r.next, s.Direct)
		s.Prepare(int(c.SessionRate*(c.WarmUp+c.Duration).Seconds()) + 64)
		gw := Open(ctx, c.SessionRate, 64, c.WarmUp, c.Duration, &r.next, s.ThroughGateway)
		if err := firstError(direct, gw); err != nil {
			return nil, fmt.Errorf("createWidgetSession latency: %w", err)
		}
		d50, d99 = append(d50, micros(direct.Quantile(.5))), append(d99, micros(direct.Quantile(.99)))
		t50, t99 = append(t50, micros(gw.Quantile(.5))), append(t99, micros(gw.Quantile(.99)))
		add50, add99 = append(add50, t50[round]-d50[round]), append(add99, t99[round]-d99[round])
		dl99, tl99 = append(dl99, micros(direct.LateQuantile(.99))), append(tl99, micros(gw.LateQuantile(.99)))
	}
	var rp, ap, tg, ratios, apRatios, cpu []float64
	for round := range c.Rounds {
		peers := "reverse proxy, Apollo Server"
		if noApollo != nil {
			peers = "reverse proxy"
		}
		r.progress("createWidgetSession throughput, round %d: %s and terragate at %d in flight", round+1, peers, c.InFlight)
		proxied := Closed(ctx, c.InFlight, c.WarmUp, c.Duration, &r.next, s.Proxied)
		s.Prepare(int(float64(proxied.Requests)*1.5) + 1000)
		var apollo Stats
		if noApollo == nil {
			apollo = Closed(ctx, c.InFlight, c.WarmUp, c.Duration, &r.next, s.ThroughApollo)
			if err := firstError(apollo); err != nil {
				return nil, fmt.Errorf("createWidgetSession throughput (Apollo Server): %w", err)
			}
			// Tokens for terragate's run too: the peer's took numbers from the same count.
			s.Prepare(int(float64(proxied.Requests)*1.5) + 1000)
		}
		var profiled chan error
		if s.pprof != "" && round == c.Rounds-1 {
			profiled = make(chan error, 1)
			go func() { profiled <- s.profile(ctx, c.WarmUp, c.Duration) }()
		}
		// The gateway's processor time per request, warm-up included: on a shared machine it
		// moves far less than throughput does with what else runs.
		var sent atomic.Int64
		cpu0, err := s.gw.CPU()
		if err != nil {
			return nil, err
		}
		gw := Closed(ctx, c.InFlight, c.WarmUp, c.Duration, &r.next, func(ctx context.Context, i int) error {
			sent.Add(1)
			return s.ThroughGateway(ctx, i)
		})
		cpu1, err := s.gw.CPU()
		if err != nil {
			return nil, err
		}
		cpu = append(cpu, micros(cpu1-cpu0)/float64(max(1, sent.Load())))
		if profiled != nil {
			if err := <-profiled; err != nil {
				return nil, fmt.Errorf("createWidgetSession profile: %w", err)
			}
		}
		if err := firstError(proxied, gw); err != nil {
			return nil, fmt.Errorf("createWidgetSession throughput: %w", err)
		}
		rp, tg = append(rp, proxied.PerSecond()), append(tg, gw.PerSecond())
		ratios = append(ratios, gw.PerSecond()/proxied.PerSecond())
		if noApollo == nil {
			ap, apRatios = append(ap, apollo.PerSecond()), append(apRatios, gw.PerSecond()/apollo.PerSecond())
		}
	}
	m50, m99, ratio := median(add50), median(add99), median(ratios)
	peer := Row{
		Scenario:  fmt.Sprintf("createWidgetSession, %d in flight, against the Apollo Server peer", c.InFlight),
		Terragate: fmtRate(median(tg)),
	}
	if noApollo != nil {
		peer.Baseline = "not measured: " + noApollo.Error()
	} else {
		apRatio := median(apRatios)
		peer.Baseline, peer.Ratio = fmtRate(median(ap))+" (Apollo Server)", fmtRatio(apRatio)
		peer.Spread, peer.Target, peer.Met = spread(apRatios, fmtRatio), "≥ 5.00x", apRatio >= 5
	}
	return []Row{
		{
			Scenario: "createWidgetSession, ~1 in flight: p50",
			Baseline: latency(median(d50)), Terragate: latency(median(t50)), Ratio: "+" + latency(m50),
			P50: latency(median(t50)), P99: latency(median(t99)),
			Spread: spread(add50, latency), Target: "≤ +100 µs", Met: m50 <= 100,
		},
		{
			Scenario: "createWidgetSession, ~1 in flight: p99",
			Baseline: latency(median(d99)) + sentLate(median(dl99)), Terragate: latency(median(t99)) + sentLate(median(tl99)), Ratio: "+" + latency(m99),
			P50: latency(median(t50)), P99: latency(median(t99)),
			Spread: spread(add99, latency), Target: "≤ +1 ms", Met: m99 <= 1000,
		},
		{
			Scenario: fmt.Sprintf("createWidgetSession, %d in flight", c.InFlight),
			Baseline: fmtRate(median(rp)) + " (reverse proxy)", Terragate: fmtRate(median(tg)), Ratio: fmtRatio(ratio),
			Spread: spread(ratios, fmtRatio), Target: "≥ 0.90x", Met: ratio >= 0.9,
		},
		peer,
		{
			Scenario:  fmt.Sprintf("createWidgetSession, %d in flight: gateway CPU per request", c.InFlight),
			Terragate: latency(median(cpu)), Spread: spread(cpu, latency),
		},
	}, nil
}

// firstError is the first failure among runs, with how many requests failed.
func firstError(runs ...Stats) error {
	for _, s := range runs {
		if s.Errors > 0 {
			return fmt.Errorf("%d of %d requests failed, the first: %w", s.Errors, s.Requests, s.FirstError)
		}
		if s.Requests == 0 {
			return errors.New("no request was measured")
		}
	}
	return nil
}

// profile writes the gateway's CPU profile over d, taken after warmUp, and its allocation
// profile after that, to the run's profile directory.
func (s *Sessions) profile(ctx context.Context, warmUp, d time.Duration) error {
	sleep(ctx, warmUp)
	secs := max(1, int(d.Seconds()))
	for _, p := range []struct{ path, file string }{
		{fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), "sessions-cpu.pprof"},
		{"/debug/pprof/allocs", "sessions-allocs.pprof"},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.pprof+p.path, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		err = check(resp, http.StatusOK)
		if err == nil {
			var f *os.File
			if f, err = os.Create(filepath.Join(s.r.Cfg.Profile, p.file)); err == nil {
				_, err = io.Copy(f, resp.Body)
				err = errors.Join(err, f.Close())
			}
		}
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// freeAddr is a loopback address with a port free at the time of asking.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
