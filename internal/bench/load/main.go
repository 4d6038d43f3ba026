// Command load runs terragate's performance scenarios on this machine and prints the
// table the README reports: each scenario's bare baseline and terragate measured in the
// same run, their ratio, latency percentiles (open model), allocations and memory.
//
//	go run ./internal/bench/load                 # the full run (a few minutes)
//	go run ./internal/bench/load -quick          # seconds: checks that every scenario works
//	go run ./internal/bench/load -only sessions  # one scenario group
//
// PostgreSQL figures need a server: -postgres URL, else TEST_DATABASE_URL, else the local
// default; a run without one leaves them out and says so.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"github.com/terragate/terragate/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cfg := bench.DefaultConfig()
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of each measured run")
	fs.DurationVar(&cfg.WarmUp, "warmup", cfg.WarmUp, "unmeasured run before each measured one")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "repetitions of each measurement (the median is reported)")
	fs.IntVar(&cfg.InFlight, "inflight", cfg.InFlight, "requests in flight in the throughput scenarios")
	fs.IntVar(&cfg.Population.Users, "users", cfg.Population.Users, "end users in the connectedUsers database")
	fs.IntVar(&cfg.Population.PerUser, "per-user", cfg.Population.PerUser, "connections per end user")
	fs.IntVar(&cfg.Subscribers, "subscribers", cfg.Subscribers, "idle WebSocket subscribers")
	fs.IntVar(&cfg.Events, "events", cfg.Events, "events delivered to the subscribers")
	fs.Float64Var(&cfg.SessionRate, "session-rate", cfg.SessionRate, "arrival rate of the createWidgetSession latency runs, per second")
	fs.Float64Var(&cfg.WebhookRate, "webhook-rate", cfg.WebhookRate, "arrival rate of the webhook ingest runs, per second")
	fs.Float64Var(&cfg.RelayRate, "relay-rate", cfg.RelayRate, "arrival rate of the relay lag runs, per second")
	fs.IntVar(&cfg.RelayBacklog, "relay-backlog", cfg.RelayBacklog, "events whose relay measures the relay's throughput")
	fs.DurationVar(&cfg.Outage, "outage", cfg.Outage, "how long the outage scenario's failing destination answers 503")
	fs.Float64Var(&cfg.OutageRate, "outage-rate", cfg.OutageRate, "arrival rate of events during the outage, per second")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", cfg.DrainTimeout, "how long after the outage to wait for the failing destination's backlog to drain")
	postgres := fs.String("postgres", "", "PostgreSQL server for the PostgreSQL figures (default TEST_DATABASE_URL, else the local default; \"off\" leaves them out)")
	only := fs.String("only", "", "comma-separated scenario groups to run: "+strings.Join(bench.Groups(), ", "))
	quick := fs.Bool("quick", false, "tiny sizes and durations: checks every scenario runs, measures nothing")
	markdown := fs.Bool("markdown", false, "print the table as Markdown")
	fs.StringVar(&cfg.Bin, "bin", "", "terragate binary to measure (default: build this tree)")
	fs.StringVar(&cfg.Profile, "profile", "", "directory for CPU and allocation profiles of the gateway under createWidgetSession's last throughput round")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *quick {
		// Quick sizes, then whatever the flags set explicitly on top of them.
		cfg = bench.QuickConfig()
		if err := fs.Parse(args); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "terragate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.Dir = dir
	cfg.Postgres = bench.PostgresURL(*postgres)
	// The in-process figures are Go benchmarks, which run for test.benchtime.
	testing.Init()
	if err := flag.Set("test.benchtime", cfg.Duration.String()); err != nil {
		return err
	}

	r, err := bench.NewRunner(ctx, cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	r.Progress = os.Stderr
	fmt.Fprintln(os.Stderr, bench.Machine())
	// The rows measured before a failure are still worth printing.
	rows, err := r.Run(ctx, *only)
	write := bench.WriteTable
	if *markdown {
		write = bench.WriteMarkdown
	}
	return errors.Join(write(os.Stdout, rows), err)
}
