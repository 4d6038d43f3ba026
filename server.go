// Command terragate is a GraphQL gateway in front of the Terra API: it keeps Terra's
// credentials on the server, creates widget sessions for signed-in end users, and keeps
// their connections current from Terra's signed webhooks.
//
//	terragate                     serve (settings from the environment or flags; -h lists them)
//	terragate -demo               the whole loop on this machine, with the Terra emulator
//	terragate migrate up|down|status   apply or inspect the database schema
//	terragate terra-emulator      the Terra emulator alone, for other backends
//	terragate schema              print the GraphQL schema (SDL), for client code generators
//	terragate version             print the version and the commit it was built from
package main

//go:generate go tool gqlgen generate
//go:generate go tool sqlc generate

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/buildinfo"
	"github.com/terragate/terragate/internal/config"
	"github.com/terragate/terragate/internal/demo"
	terragate "github.com/terragate/terragate/internal/gateway"
	"github.com/terragate/terragate/internal/httplog"
	"github.com/terragate/terragate/internal/store/engine"
	"github.com/terragate/terragate/internal/terrasim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "terragate:", err)
		}
		os.Exit(1)
	}
}

// run serves terragate, or runs one of its subcommands, until ctx ends. stdout gets the few
// lines a person reads (where it listens, the demo's token); stderr gets the structured logs.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "terra-emulator":
			return terrasim.Command(ctx, args[1:], stdout, stderr)
		case "schema":
			if len(args) > 1 {
				return errors.New("usage: terragate schema (takes no arguments)")
			}
			_, err := io.WriteString(stdout, graph.SDL())
			return err
		case "version":
			if len(args) > 1 {
				return errors.New("usage: terragate version (takes no arguments)")
			}
			return buildinfo.Read().Write(stdout)
		case "migrate":
			// For operators who migrate separately (MIGRATE_ON_START=false).
			if len(args) < 2 || (args[1] != "up" && args[1] != "down" && args[1] != "status") {
				return errors.New("usage: terragate migrate up|down|status [-database-url URL]")
			}
			cfg, err := config.Load(args[2:], getenv, stderr)
			if err != nil {
				return err
			}
			return engine.Migrate(ctx, cfg.DatabaseURL, args[1], stdout, httplog.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat))
		}
	}
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := httplog.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	defer ln.Close()
	gw, err := terragate.New(ctx, cfg, ln.Addr(), log)
	if err != nil {
		return err
	}
	defer gw.Close()

	fmt.Fprintf(stdout, "terragate listening on %s (public URL %s)\n", terrasim.LoopbackURL(ln.Addr()), gw.PublicURL())
	if cfg.Demo {
		demo.Banner(stdout, gw.PublicURL(), gw.DemoToken())
	}
	return gw.Serve(ctx, ln)
}
