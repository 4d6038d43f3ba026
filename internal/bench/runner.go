package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Config sizes a run.
type Config struct {
	// Duration is each measured run; WarmUp runs before it, unmeasured.
	Duration, WarmUp time.Duration
	// Rounds repeats each measurement; the table shows the median and the spread.
	Rounds int
	// InFlight is the concurrency of the throughput scenarios.
	InFlight int
	// Population is the end users and connections of the connectedUsers scenarios.
	Population Population
	// Subscribers is how many idle WebSocket subscribers the subscription scenario opens,
	// and Events how many events it then delivers, one at a time, each to one of them.
	Subscribers, Events int
	// SessionRate is the arrival rate (per second) at which createWidgetSession latency is
	// measured: low enough that about one request is in flight.
	SessionRate float64
	// WebhookRate is the sustained arrival rate of the webhook ingest scenarios.
	WebhookRate float64
	// RelayRate is the arrival rate at which the relay's lag is measured, and RelayBacklog
	// the events whose delivery measures its throughput.
	RelayRate    float64
	RelayBacklog int
	// Outage is how long the outage scenario's failing destination answers 503, while
	// events arrive at OutageRate; DrainTimeout bounds the wait for its backlog afterwards.
	Outage       time.Duration
	OutageRate   float64
	DrainTimeout time.Duration
	// Postgres is a PostgreSQL server whose database the runs may create schemas in (each
	// dropped afterwards); empty leaves PostgreSQL out.
	Postgres string
	// Dir holds the SQLite files and the binary.
	Dir string
	// Profile, when set, is a directory where the createWidgetSession scenario writes CPU
	// and allocation profiles of its gateway under the last throughput round.
	Profile string
	// Bin, when set, is a terragate binary to run instead of building this tree's: the
	// same load against two builds, run by turns, compares them.
	Bin string
}

// DefaultConfig is the full run the README reports.
func DefaultConfig() Config {
	return Config{
		Duration:    3 * time.Second,
		WarmUp:      time.Second,
		Rounds:      3,
		InFlight:    32,
		Population:  Population{Users: 100_000, PerUser: 3},
		Subscribers: 10_000,
		Events:      200,
		SessionRate: 200,
		WebhookRate: 2000,
		// Issue 13's relay targets.
		RelayRate:    500,
		RelayBacklog: 10_000,
		Outage:       10 * time.Minute,
		OutageRate:   50,
		DrainTimeout: 15 * time.Minute,
	}
}

// Runner runs the scenarios of one run; they share the binary, the emulator and the
// numbering of requests, so that no two requests of a run are the same.
type Runner struct {
	Cfg Config
	Bin string
	Emu *Emulator
	// Progress receives a line as each measurement starts (nil: none).
	Progress io.Writer

	client *http.Client
	next   atomic.Int64
}

// NewRunner builds terragate and starts the emulator. Close releases them.
func NewRunner(ctx context.Context, cfg Config) (*Runner, error) {
	bin := cfg.Bin
	if bin == "" {
		var err error
		if bin, err = Build(ctx, cfg.Dir); err != nil {
			return nil, err
		}
	}
	emu, err := StartEmulator()
	if err != nil {
		return nil, err
	}
	return &Runner{Cfg: cfg, Bin: bin, Emu: emu, client: Client(cfg.InFlight)}, nil
}

// Close stops the emulator.
func (r *Runner) Close() { r.Emu.Close() }

// fresh gives the next group of scenarios the state a run of that group alone starts from:
// a new emulator (the last one holds every widget session created so far, tens of MB after
// createWidgetSession's runs) and a collected heap. The load generator shares this
// process's heap, and a bigger one makes every garbage collection take longer from the
// two cores the measurements share.
func (r *Runner) fresh() error {
	r.Emu.Close()
	emu, err := StartEmulator()
	if err != nil {
		return err
	}
	r.Emu = emu
	runtime.GC()
	return nil
}

func (r *Runner) progress(format string, args ...any) {
	if r.Progress != nil {
		fmt.Fprintf(r.Progress, format+"\n", args...)
	}
}

// sqliteURL names a new SQLite file of the run.
func (r *Runner) sqliteURL(name string) string {
	return "sqlite:" + filepath.Join(r.Cfg.Dir, name+".db")
}

// startGateway runs terragate on databaseURL in front of the emulator.
func (r *Runner) startGateway(ctx context.Context, databaseURL string, extra map[string]string) (*Gateway, error) {
	env := GatewayEnv(databaseURL, r.Emu.URL)
	for k, v := range extra {
		env[k] = v
	}
	return StartGateway(ctx, r.Bin, env)
}

// Row is one line of the report, formatted: the baseline's figure and terragate's, and
// Ratio comparing them as the scenario's target does.
type Row struct {
	Scenario  string
	Baseline  string
	Terragate string
	Ratio     string
	P50, P99  string
	Allocs    string
	Memory    string
	Spread    string
	Target    string
	Met       bool
}

// median of xs (xs is reordered).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// spread is "min–max" of xs, formatted with f.
func spread(xs []float64, f func(float64) string) string {
	if len(xs) < 2 {
		return ""
	}
	return f(slices.Min(xs)) + "–" + f(slices.Max(xs))
}

// sentLate notes how late, at p99, an open-model generator sent its requests (µs): the part
// of a tail latency that is the machine's, not the server's.
func sentLate(p99 float64) string { return " (sent late by " + latency(p99) + " at p99)" }

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func fmtMicros(v float64) string { return fmt.Sprintf("%.0f µs", v) }

func fmtMillis(v float64) string { return fmt.Sprintf("%.2f ms", v/1000) }

func fmtRate(v float64) string { return fmt.Sprintf("%.0f/s", v) }

func fmtRatio(v float64) string { return fmt.Sprintf("%.2fx", v) }

func fmtBytes(v float64) string {
	switch {
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1f KB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}

// latency formats a latency figure in µs below a millisecond, else in ms.
func latency(v float64) string {
	if v >= 1000 {
		return fmtMillis(v)
	}
	return fmtMicros(v)
}

// check is a failed request's error: the answer's status when it is not want.
func check(resp *http.Response, want int) error {
	if resp.StatusCode != want {
		return fmt.Errorf("HTTP %d, want %d", resp.StatusCode, want)
	}
	return nil
}

// QuickConfig runs every scenario in seconds with tiny sizes: for CI, which checks that the
// suite works and reads no figure.
func QuickConfig() Config {
	return Config{
		Duration:     200 * time.Millisecond,
		WarmUp:       50 * time.Millisecond,
		Rounds:       1,
		InFlight:     4,
		Population:   Population{Users: 1000, PerUser: 3},
		Subscribers:  50,
		Events:       10,
		SessionRate:  50,
		WebhookRate:  100,
		RelayRate:    100,
		RelayBacklog: 200,
		// The failing destination's breaker stays open 30 s, longer than the quick wait:
		// quick mode checks the outage scenario runs, not that the backlog drains.
		Outage:       2 * time.Second,
		OutageRate:   50,
		DrainTimeout: 2 * time.Second,
	}
}

// group is a set of scenarios that share a fixture.
type group struct {
	name string
	rows func(*Runner, context.Context) ([]Row, error)
}

// groups are the scenario groups, in the order Run runs them.
var groups = []group{
	{"sessions", (*Runner).SessionRows},
	{"users", (*Runner).UserRows},
	{"webhooks", (*Runner).WebhookRows},
	{"subscriptions", (*Runner).SubscriptionRows},
	{"transports", (*Runner).TransportRows},
	{"startup", (*Runner).StartupRows},
	{"relay", (*Runner).RelayRows},
	{"jobengine", (*Runner).JobEngineRows},
	// Last and on its own: it lasts Cfg.Outage plus up to Cfg.DrainTimeout.
	{"outage", (*Runner).OutageRows},
}

// Groups names the scenario groups, for -only.
func Groups() []string {
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.name
	}
	return names
}

// Run runs the groups named in only (comma-separated; empty: all) and returns their rows:
// on a failure, those of the groups that ran before it.
func (r *Runner) Run(ctx context.Context, only string) ([]Row, error) {
	want := map[string]bool{}
	for g := range strings.SplitSeq(only, ",") {
		if g = strings.TrimSpace(g); g != "" {
			if !slices.Contains(Groups(), g) {
				return nil, fmt.Errorf("no scenario group %q (have %s)", g, strings.Join(Groups(), ", "))
			}
			want[g] = true
		}
	}
	var rows []Row
	ran := false
	for _, g := range groups {
		if len(want) > 0 && !want[g.name] {
			continue
		}
		if ran {
			if err := r.fresh(); err != nil {
				return rows, err
			}
		}
		ran = true
		rs, err := g.rows(r, ctx)
		if err != nil {
			return rows, fmt.Errorf("%s: %w", g.name, err)
		}
		rows = append(rows, rs...)
	}
	return rows, nil
}

// Machine describes where the figures come from.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs (GOMAXPROCS %d), %s %s/%s", model, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
