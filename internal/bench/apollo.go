package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// installApollo is what makes the Apollo Server peer runnable, from the module root.
const installApollo = "npm ci --prefix internal/bench/apollo"

// errNoApollo is the kind of error StartApollo returns when Node or the peer's packages are
// missing: a machine that can run the peer but was not set up to, not a failure of the peer.
var errNoApollo = errors.New("the Apollo Server peer is not installed")

// Apollo is the Apollo Server peer of createWidgetSession (internal/bench/apollo): the same
// mutation served by @apollo/server on Node, verifying the same JWT and calling Terra, with
// no store. Issue 16 sets terragate's throughput target against it.
type Apollo struct {
	URL  string
	cmd  *exec.Cmd
	done chan error
	logs *logScan
}

// apolloDir is the peer's directory, found the way build finds the commands it compiles:
// through the go command, from the working directory's module.
func apolloDir(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-f", "{{.Dir}}", "github.com/terragate/terragate/internal/bench")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locate internal/bench: %v: %s", err, stderr.String())
	}
	return filepath.Join(strings.TrimSpace(string(out)), "apollo"), nil
}

// StartApollo runs the peer (node server.mjs) in front of the emulator at terraURL, with
// the benchmark's credentials, and waits until it listens. Without node or the peer's
// node_modules it returns an errNoApollo error that says what to run.
func StartApollo(ctx context.Context, terraURL string) (*Apollo, error) {
	dir, err := apolloDir(ctx)
	if err != nil {
		return nil, err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("%w (no node on PATH): install Node 20 or newer, then run %s", errNoApollo, installApollo)
	}
	for _, lib := range []string{"@apollo/server", "graphql", "jose"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", lib, "package.json")); err != nil {
			return nil, fmt.Errorf("%w (no node_modules/%s): run %s", errNoApollo, lib, installApollo)
		}
	}
	cmd := exec.Command(node, "server.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"TERRA_URL="+terraURL,
		"TERRA_DEV_ID="+DevID,
		"TERRA_API_KEY="+APIKey,
		"AUTH_JWT_SECRET="+JWTSecret,
		"PORT=0",
		// As an operator runs it: Apollo Server trims its errors and landing page.
		"NODE_ENV=production",
	)
	a := &Apollo{cmd: cmd}
	if a.URL, a.done, a.logs, err = startListening(ctx, cmd, "the Apollo Server peer"); err != nil {
		return nil, err
	}
	return a, nil
}

// Close kills the peer and waits for it: it holds nothing worth a graceful stop.
func (a *Apollo) Close() error {
	_ = a.cmd.Process.Kill()
	<-a.done
	return nil
}
