package terrasim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Command is `terragate terra-emulator`: the emulator served alone, so that other backends
// can develop against it, until ctx ends.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("terra-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9090", "address to listen on")
	publicURL := fs.String("public-url", "", "base URL browsers reach the emulator at (default http://<addr>)")
	webhookURL := fs.String("webhook-url", "", "where to post signed webhooks (empty: none are sent)")
	webhookSecret := fs.String("webhook-secret", "", "webhook signing secret")
	devID := fs.String("dev-id", "", "the dev-id clients must send")
	apiKey := fs.String("api-key", "", "the x-api-key clients must send")
	legacyGone := fs.Bool("legacy-gone", false, "answer 410 on the legacy widget endpoint, as Terra does for accounts created after 3 September 2026")
	legacyOnly := fs.Bool("legacy-only", false, "answer 404 on the new widget endpoint, as Terra does for an account not yet moved to it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *devID == "" || *apiKey == "" {
		return errors.New("terra-emulator: -dev-id and -api-key are required")
	}
	if *webhookURL != "" && *webhookSecret == "" {
		return errors.New("terra-emulator: -webhook-secret is required with -webhook-url")
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With("component", "terra-emulator")
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	defer ln.Close()
	self := LoopbackURL(ln.Addr())
	if *publicURL == "" {
		*publicURL = self
	}
	emu := New(Config{
		DevID:         *devID,
		APIKey:        *apiKey,
		WebhookURL:    *webhookURL,
		WebhookSecret: *webhookSecret,
		PublicURL:     strings.TrimRight(*publicURL, "/"),
		LegacyGone:    *legacyGone,
		LegacyOnly:    *legacyOnly,
		Logger:        log,
	})
	defer emu.Close()
	srv := &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "Terra emulator listening on %s: API at %s/v2, widget pages at %s/widget/session/<id>\n",
		self, *publicURL, *publicURL)
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// LoopbackURL is how a process reaches its own listener at a: http://127.0.0.1:port when it
// listens on every interface.
func LoopbackURL(a net.Addr) string {
	host, p, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, p)
}
