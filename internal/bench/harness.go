package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/terrasim"
)

// Credentials of the benchmark's own gateway and emulator. They protect nothing: both
// listen on loopback for the length of a run.
const (
	DevID         = "bench-dev-id"
	APIKey        = "bench-terra-api-key-0123456789"
	WebhookSecret = "bench-webhook-secret-0123456789"
	JWTSecret     = "bench-jwt-secret-0123456789abcdef0123"
)

// Build compiles terragate into dir and returns the binary's path. The benchmarks run the
// binary operators run, as a process of its own, so that its CPU, memory and start-up are
// its own.
func Build(ctx context.Context, dir string) (string, error) {
	return build(ctx, dir, "github.com/terragate/terragate")
}

// build compiles the command pkg into dir and returns the binary's path.
func build(ctx context.Context, dir, pkg string) (string, error) {
	out := filepath.Join(dir, path.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: %v: %s", pkg, err, stderr.String())
	}
	return out, nil
}

// Emulator is the Terra emulator served on loopback.
type Emulator struct {
	*terrasim.Emulator
	URL string
	srv *http.Server
}

// StartEmulator serves a Terra emulator on a loopback port. It posts no webhooks: the
// benchmarks that need webhooks sign and send their own, at the rate they choose.
func StartEmulator() (*Emulator, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	url := "http://" + ln.Addr().String()
	e := &Emulator{
		Emulator: terrasim.New(terrasim.Config{DevID: DevID, APIKey: APIKey, PublicURL: url, Logger: slog.New(slog.DiscardHandler)}),
		URL:      url,
	}
	e.srv = &http.Server{Handler: e.Emulator, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.srv.Serve(ln) }()
	return e, nil
}

// Close stops the emulator.
func (e *Emulator) Close() {
	_ = e.srv.Close()
	e.Emulator.Close()
}

// GatewayEnv is the environment of a benchmark gateway on databaseURL in front of the
// emulator at terraURL: production's defaults except that rate limits (which would
// measure themselves), the playground and the sync sweep are off.
func GatewayEnv(databaseURL, terraURL string) map[string]string {
	return map[string]string{
		"ADDR":                      "127.0.0.1:0",
		"DATABASE_URL":              databaseURL,
		"TERRA_DEV_ID":              DevID,
		"TERRA_API_KEY":             APIKey,
		"TERRA_WEBHOOK_SECRET":      WebhookSecret,
		"AUTH_JWT_SECRET":           JWTSecret,
		"TERRA_API_URL":             terraURL + "/v2",
		"TERRA_WIDGET_URL":          terraURL + "/api/widget/session",
		"RATE_LIMIT_USER":           "off",
		"RATE_LIMIT_IP":             "off",
		"RATE_LIMIT_CREATE_SESSION": "off",
		"SYNC_INTERVAL":             "0",
		"PLAYGROUND":                "false",
		"LOG_LEVEL":                 "info",
	}
}

// Gateway is a terragate process.
type Gateway struct {
	URL string
	// Ready is how long the process took from its start to its first ready answer.
	Ready time.Duration
	cmd   *exec.Cmd
	done  chan error
	logs  *logScan
}

var listening = regexp.MustCompile(`listening on (http://\S+)`)

// StartGateway runs the binary with env (added to this process's environment) and waits
// until /readyz answers 200.
func StartGateway(ctx context.Context, bin string, env map[string]string) (*Gateway, error) {
	cmd := exec.Command(bin)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	g := &Gateway{cmd: cmd}
	start := time.Now()
	var err error
	if g.URL, g.done, g.logs, err = startListening(ctx, cmd, "terragate"); err != nil {
		return nil, err
	}
	for {
		resp, err := http.Get(g.URL + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				g.Ready = time.Since(start)
				return g, nil
			}
		}
		if time.Since(start) > 30*time.Second {
			_ = g.Stop()
			return nil, fmt.Errorf("terragate never became ready: %s", g.logs.tail())
		}
		time.Sleep(time.Millisecond)
	}
}

// Stop ends the process as an orchestrator would (SIGTERM) and waits for it.
func (g *Gateway) Stop() error {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.done:
		return err
	case <-time.After(20 * time.Second):
		_ = g.cmd.Process.Kill()
		return errors.New("terragate did not stop on SIGTERM")
	}
}

// RSS is the process's resident memory in bytes, from /proc.
func (g *Gateway) RSS() (int64, error) {
	return rss(g.cmd.Process.Pid)
}

func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// CPU is the processor time the process has used so far, user and system, from /proc (in
// clock ticks of 10 ms, Linux's USER_HZ).
func (g *Gateway) CPU() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", g.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces; the fields after it do not.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond, errors.Join(err1, err2)
}

// Metric reads one sample from the process's /metrics: name with its labels exactly as
// Prometheus prints them, e.g. `go_memstats_heap_inuse_bytes` or
// `terragate_graphql_subscriptions_open`.
func (g *Gateway) Metric(series string) (float64, error) {
	resp, err := http.Get(g.URL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", series)
}

// BusyErrors counts the log lines in which SQLite reported itself busy or locked: with
// one writer connection there must be none.
func (g *Gateway) BusyErrors() int64 { return g.logs.busy.Load() }

// ErrorLines counts the log lines at level ERROR.
func (g *Gateway) ErrorLines() int64 { return g.logs.errors.Load() }

// logScan counts what matters in the gateway's log lines and keeps only the last few,
// for error messages: a long run writes far too many to keep.
type logScan struct {
	mu     sync.Mutex
	part   []byte
	last   []string
	busy   atomic.Int64
	errors atomic.Int64
}

func (l *logScan) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		line := l.part[:i]
		if bytes.Contains(line, []byte("SQLITE_BUSY")) || bytes.Contains(line, []byte("database is locked")) {
			l.busy.Add(1)
		}
		if bytes.Contains(line, []byte(`"level":"ERROR"`)) {
			l.errors.Add(1)
		}
		if len(l.last) == 20 {
			l.last = l.last[1:]
		}
		l.last = append(l.last, string(line))
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

func (l *logScan) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.last, "\n")
}

// Tokens issues end-user tokens the benchmark gateway accepts, one per end user, ahead
// of the measurement so that signing is not counted.
func Tokens(users []string) ([]string, error) {
	out := make([]string, len(users))
	for i, u := range users {
		t, err := auth.Issue([]byte(JWTSecret), auth.IssueOptions{Subject: u, TTL: 24 * time.Hour})
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

// Client is the load generator's HTTP client: keep-alive connections, enough of them for
// every request in flight.
func Client(inFlight int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = max(100, 2*inFlight)
	t.MaxIdleConnsPerHost = max(100, 2*inFlight)
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

// startListening starts cmd and waits for the "listening on" line on its stdout, which
// gives its URL; done receives cmd's end, and logs holds its stderr. A process that exits
// first, takes over 30 s or outlives ctx is killed and its log's tail returned in the error.
func startListening(ctx context.Context, cmd *exec.Cmd, what string) (url string, done chan error, logs *logScan, err error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, nil, err
	}
	logs, done = &logScan{}, make(chan error, 1)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		return "", nil, nil, err
	}
	go func() { done <- cmd.Wait() }()
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
	}()
	select {
	case url = <-urls:
		return url, done, logs, nil
	case err := <-done:
		return "", nil, nil, fmt.Errorf("%s exited at start: %v: %s", what, err, logs.tail())
	case <-time.After(30 * time.Second):
		err = fmt.Errorf("%s did not start: %s", what, logs.tail())
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = cmd.Process.Kill()
	<-done
	return "", nil, nil, err
}
