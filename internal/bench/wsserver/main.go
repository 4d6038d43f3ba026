// Command wsserver serves terragate's GraphQL schema over WebSocket with one transport or
// the other, for the benchmark that compares them: TRANSPORT=wsgraphql (terragate's) or
// TRANSPORT=gqlgen (gqlgen's transport.Websocket, configured as terragate would run it).
// Both sit behind the same executor, resolvers and event bus; only the transport differs.
//
// It prints "listening on http://ADDR" and serves /graphql, /readyz, POST /publish?ref=R
// (an event for end user R's subscribers) and /metrics (the Go heap and stacks after a
// collection, and the subscriptions open).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/connection"
	"github.com/terragate/terragate/internal/events"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/wsgraphql"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "wsserver:", err)
		os.Exit(1)
	}
}

// The settings terragate runs with (graph.NewHandler's).
const (
	initTimeout = 10 * time.Second
	keepAlive   = 15 * time.Second
)

func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	verifier, err := auth.NewVerifier(auth.Config{Secret: []byte(getenv("AUTH_JWT_SECRET"))})
	if err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	bus := events.NewLocal(log)
	r := &graph.Resolver{Connections: connection.New(nil, users{}, bus, nil, nil, log), Bus: bus, Log: log}
	srv := handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: r}))
	switch t := getenv("TRANSPORT"); t {
	case "wsgraphql":
		srv.AddTransport(wsgraphql.New(wsgraphql.Config{Init: initFunc(verifier), InitTimeout: initTimeout, KeepAlive: keepAlive}))
	case "gqlgen":
		srv.AddTransport(transport.Websocket{
			Implementation: transport.CoderWebsocketImplementation{},
			InitFunc: func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
				ctx, _, err := initFunc(verifier)(ctx, p)
				return ctx, &p, err
			},
			InitTimeout:           initTimeout,
			KeepAlivePingInterval: keepAlive, // "ka" for graphql-ws
			PingPongInterval:      keepAlive, // ping, and a pong expected, for graphql-transport-ws
		})
	default:
		return fmt.Errorf("TRANSPORT=%q: want wsgraphql or gqlgen", t)
	}
	srv.AddTransport(transport.POST{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))

	mux := http.NewServeMux()
	mux.Handle("/graphql", srv)
	mux.HandleFunc("GET /readyz", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, req *http.Request) {
		ref := req.URL.Query().Get("ref")
		ev := events.Event{ReferenceID: ref, Type: events.Connected, UserID: "tu-" + ref, At: time.Now()}
		if err := bus.Publish(req.Context(), ev); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		// Live memory, not the garbage an idle process has not collected yet.
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		fmt.Fprintf(w, "go_memstats_heap_inuse_bytes %d\ngo_memstats_stack_inuse_bytes %d\nterragate_graphql_subscriptions_open %d\n",
			m.HeapInuse, m.StackInuse, bus.Subscribers())
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return hs.Shutdown(shutdown)
}

// initFunc authenticates connection_init's bearer token, as graph's does.
func initFunc(v *auth.Verifier) wsgraphql.InitFunc {
	return func(ctx context.Context, p transport.InitPayload) (context.Context, time.Time, error) {
		token, err := auth.ParseBearer(p.Authorization())
		if err != nil {
			return ctx, time.Time{}, err
		}
		user, err := v.Verify(token)
		if err != nil {
			return ctx, time.Time{}, err
		}
		return auth.WithUser(ctx, user), time.Time{}, nil
	}
}

// users answers every Terra user "tu-R" as end user R's, the one read connectionEvents
// makes per event; the store is not what is compared.
type users struct{ store.Store }

func (users) TerraUser(_ context.Context, userID string) (store.TerraUser, error) {
	ref := strings.TrimPrefix(userID, "tu-")
	return store.TerraUser{UserID: userID, Provider: "OURA", ReferenceID: ref, Active: true, Status: store.StatusConnected}, nil
}
