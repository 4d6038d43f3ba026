package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// Transport is one WebSocket transport the transports scenario measures.
type Transport struct {
	// Name is the wsserver's TRANSPORT: "wsgraphql" (terragate's) or "gqlgen".
	Name string
	// Label is how the report names it.
	Label string
}

// Transports are terragate's transport and gqlgen's transport.Websocket, in that order.
var Transports = []Transport{
	{Name: "wsgraphql", Label: "terragate's internal/wsgraphql"},
	{Name: "gqlgen", Label: "gqlgen's transport.Websocket"},
}

// TransportFigures are what one transport costs in one run.
type TransportFigures struct {
	// RSSEach and GoEach are the memory of each idle subscriber: resident, and the Go
	// heap in use plus goroutine stacks after a collection (what is live).
	RSSEach, GoEach float64
	// Latency is each event's time from its publish request to its arrival, sorted.
	Latency []time.Duration
}

// MeasureTransport serves terragate's schema with transport t in a process of its own (the
// wsserver command, built into r.Cfg.Dir), opens Cfg.Subscribers idle connectionEvents
// subscribers on it, one end user each, and reads what they cost it; then publishes
// Cfg.Events events one at a time, each for one random subscriber's end user, and times
// each from the publish to its arrival, checking that no other subscriber heard it.
func (r *Runner) MeasureTransport(ctx context.Context, bin string, t Transport) (TransportFigures, error) {
	c := r.Cfg
	srv, err := StartGateway(ctx, bin, map[string]string{"TRANSPORT": t.Name, "AUTH_JWT_SECRET": JWTSecret})
	if err != nil {
		return TransportFigures{}, err
	}
	defer srv.Stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	users := make([]string, c.Subscribers)
	for i := range users {
		users[i] = "bench-transport-" + strconv.Itoa(i)
	}
	tokens, err := Tokens(users)
	if err != nil {
		return TransportFigures{}, err
	}
	before, err := gatewayMemory(srv)
	if err != nil {
		return TransportFigures{}, err
	}
	r.progress("transports: %s: opening %d idle subscribers", t.Name, c.Subscribers)
	var pushed atomic.Int64
	subs, err := openSubscribers(ctx, srv, tokens, &pushed)
	defer closeAll(subs)
	if err != nil {
		return TransportFigures{}, err
	}
	after, err := gatewayMemory(srv)
	if err != nil {
		return TransportFigures{}, err
	}
	f := TransportFigures{
		RSSEach: float64(after.rss-before.rss) / float64(c.Subscribers),
		GoEach:  float64(after.goBytes-before.goBytes) / float64(c.Subscribers),
	}

	r.progress("transports: %s: %d events, one at a time, each to one subscriber", t.Name, c.Events)
	for range c.Events {
		i := rand.IntN(c.Subscribers)
		sent := time.Now()
		if err := publish(ctx, r.client, srv.URL, users[i]); err != nil {
			return TransportFigures{}, err
		}
		select {
		case at := <-subs[i].events:
			f.Latency = append(f.Latency, at.Sub(sent))
		case <-time.After(5 * time.Second):
			return TransportFigures{}, fmt.Errorf("%s: an event never reached its subscriber", t.Name)
		}
	}
	time.Sleep(100 * time.Millisecond) // a stray event to another subscriber would be here by now
	if got := pushed.Load(); got != int64(c.Events) {
		return TransportFigures{}, fmt.Errorf("%s: %d events delivered for %d sent: isolation broken", t.Name, got, c.Events)
	}
	slices.Sort(f.Latency)
	return f, nil
}

// publish asks the wsserver at base for one event to end user ref's subscribers.
func publish(ctx context.Context, client *http.Client, base, ref string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/publish?ref="+url.QueryEscape(ref), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return check(resp, http.StatusOK)
}

// buildWSServer compiles the wsserver command into r.Cfg.Dir.
func (r *Runner) buildWSServer(ctx context.Context) (string, error) {
	return build(ctx, r.Cfg.Dir, "github.com/terragate/terragate/internal/bench/wsserver")
}

// TransportRows measures terragate's WebSocket transport and gqlgen's in the same run,
// behind the same schema, executor, resolvers and bus (see MeasureTransport), one after
// the other, and reports each one's memory per idle subscriber and event latency, and the
// ratio of gqlgen's memory to terragate's: terragate keeps its own transport only while
// that is at least 2.
func (r *Runner) TransportRows(ctx context.Context) ([]Row, error) {
	bin, err := r.buildWSServer(ctx)
	if err != nil {
		return nil, err
	}
	figs := make([]TransportFigures, len(Transports))
	for i, t := range Transports {
		if i > 0 {
			if err := r.fresh(); err != nil {
				return nil, err
			}
		}
		if figs[i], err = r.MeasureTransport(ctx, bin, t); err != nil {
			return nil, err
		}
	}
	ours, theirs := figs[0], figs[1]
	ratio := theirs.GoEach / ours.GoEach
	rows := []Row{{
		Scenario:  fmt.Sprintf("%d idle subscribers, memory each: %s vs %s", r.Cfg.Subscribers, Transports[0].Label, Transports[1].Label),
		Baseline:  fmtBytes(theirs.GoEach) + " Go heap+stacks, " + fmtBytes(theirs.RSSEach) + " RSS",
		Terragate: fmtBytes(ours.GoEach) + " Go heap+stacks, " + fmtBytes(ours.RSSEach) + " RSS",
		Ratio:     fmtRatio(ratio) + " leaner",
		Target:    "≥ 2x leaner (else use gqlgen's)", Met: ratio >= 2,
	}}
	for i, f := range figs {
		st := Stats{Requests: len(f.Latency), Latencies: f.Latency}
		rows = append(rows, Row{
			Scenario:  "event to its one subscriber among the idle: " + Transports[i].Label,
			Terragate: fmt.Sprintf("%d events, none astray", len(f.Latency)),
			P50:       latency(micros(st.Quantile(.5))), P99: latency(micros(st.Quantile(.99))),
		})
	}
	return rows, nil
}
