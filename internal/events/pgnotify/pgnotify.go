// Package pgnotify is an events.Bus that spans every terragate instance sharing one
// PostgreSQL database, so a webhook received by one instance reaches a subscriber connected
// to another. It rides on LISTEN/NOTIFY: events hold ids only, so they fit in a NOTIFY
// payload as they are, and nothing is stored (the state is already in the store).
package pgnotify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/terragate/terragate/internal/events"
)

// DefaultChannel is the NOTIFY channel used when Options.Channel is empty.
const DefaultChannel = "terragate_events"

// MaxPayload is the largest payload Publish sends: PostgreSQL refuses payloads of 8000
// bytes or more, and an event of ids is a few hundred.
const MaxPayload = 7999

// maxChannel is NAMEDATALEN-1: LISTEN would silently truncate a longer name while
// pg_notify refuses it, so the two would never meet.
const maxChannel = 63

// pingTimeout bounds the liveness check of a quiet listening connection.
const pingTimeout = 5 * time.Second

// Errors returned by Publish and Subscribe.
var (
	// ErrNotListening means the listening connection is down, so this instance's own
	// subscribers could not hear the event; the caller logs it and carries on.
	ErrNotListening = errors.New("pgnotify: not listening")
	// ErrClosed means Close was called.
	ErrClosed = errors.New("pgnotify: bus closed")
	// ErrInvalidEvent means the event cannot be carried (missing ids, unknown type, too large).
	ErrInvalidEvent = errors.New("pgnotify: invalid event")
)

// Options tunes a Bus; the zero value is ready for production.
type Options struct {
	// Channel is the NOTIFY channel. Every instance that should hear the others uses the
	// same one; a separate deployment on the same database uses its own.
	Channel string
	// MinBackoff and MaxBackoff bound the wait before each reconnection attempt of the
	// listening connection (defaults 100ms and 10s): short enough that a database restart
	// costs a few seconds of events, long enough not to hammer a database that is down.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is how long the listening connection may stay silent before it is
	// checked (default 30s), so a half-open TCP connection is noticed long before the
	// kernel's keepalive would.
	PingInterval time.Duration
	// PublishTimeout bounds one Publish (default 5s), so a stalled pool cannot hold up
	// the webhook that caused the event.
	PublishTimeout time.Duration
}

func (o *Options) setDefaults() error {
	if o.Channel == "" {
		o.Channel = DefaultChannel
	}
	if len(o.Channel) > maxChannel {
		return fmt.Errorf("pgnotify: channel name longer than %d bytes", maxChannel)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		return errors.New("pgnotify: MaxBackoff is less than MinBackoff")
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 30 * time.Second
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 5 * time.Second
	}
	return nil
}

// Bus is the cross-instance events.Bus. Publish sends a NOTIFY through the pool; a single
// listening connection per instance receives every NOTIFY on the channel, its own included,
// and hands each event to this instance's subscribers. Local subscribers therefore hear an
// event only through the listener, exactly once, whichever instance published it.
type Bus struct {
	pool    *pgxpool.Pool
	config  *pgx.ConnConfig
	opts    Options
	log     *slog.Logger
	local   *events.Local
	listen  string // the LISTEN statement, with the channel quoted as an identifier
	stop    context.CancelFunc
	done    chan struct{}
	closing sync.Once

	closed    atomic.Bool
	connected atomic.Bool
	pid       atomic.Uint32 // the listening backend, for tests and logs
}

var _ events.Bus = (*Bus)(nil)

// New connects the listening connection and starts listening. pool carries Publish;
// connString is where the listening connection goes, and may be empty to use the pool's:
// it is separate because LISTEN needs a session of its own, which a connection pooler in
// transaction mode (PgBouncer) in front of the pool cannot give. ctx bounds the first
// connection only; a database that cannot be reached at startup is an error, so a wrong
// address fails the deployment rather than leaving it unready forever. Close stops it.
func New(ctx context.Context, pool *pgxpool.Pool, connString string, log *slog.Logger, opts Options) (*Bus, error) {
	if pool == nil {
		return nil, errors.New("pgnotify: nil pool")
	}
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	var config *pgx.ConnConfig
	if connString == "" {
		config = pool.Config().ConnConfig
	} else {
		var err error
		if config, err = pgx.ParseConfig(connString); err != nil {
			return nil, fmt.Errorf("pgnotify: listener connection string: %w", err)
		}
	}
	if config.RuntimeParams == nil {
		config.RuntimeParams = map[string]string{}
	}
	if _, ok := config.RuntimeParams["application_name"]; !ok {
		// Names the session in pg_stat_activity, so an operator can tell it from the pool.
		config.RuntimeParams["application_name"] = "terragate-events"
	}
	b := &Bus{
		pool:   pool,
		config: config,
		opts:   opts,
		log:    log.With("channel", opts.Channel),
		local:  events.NewLocal(log),
		listen: "LISTEN " + pgx.Identifier{opts.Channel}.Sanitize(),
		done:   make(chan struct{}),
	}
	conn, err := b.connect(ctx)
	if err != nil {
		return nil, err
	}
	// The listener outlives New's ctx; Close ends it.
	runCtx, stop := context.WithCancel(context.Background())
	b.stop = stop
	go b.run(runCtx, conn)
	return b, nil
}

// Publish sends the event to every instance, this one included, where the listener hands it
// to the subscribers of its end user. It refuses while this instance is not listening.
func (b *Bus) Publish(ctx context.Context, ev events.Event) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if err := validate(ev); err != nil {
		return err
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: payload of %d bytes (at most %d)", ErrInvalidEvent, len(payload), MaxPayload)
	}
	if !b.connected.Load() {
		return ErrNotListening
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.PublishTimeout)
	defer cancel()
	// After the database went away and came back, the pool may still hold connections
	// that died with it; the first statement on one fails and the pool drops it. NOTIFY is
	// safe to send again (it either reached the server or did not), so try a fresh one.
	var lastErr error
	for attempt := 0; attempt < publishAttempts; attempt++ {
		_, lastErr = b.pool.Exec(ctx, "SELECT pg_notify($1, $2)", b.opts.Channel, string(payload))
		if lastErr == nil || ctx.Err() != nil {
			break
		}
	}
	if lastErr != nil {
		return fmt.Errorf("pgnotify: notify: %w", lastErr)
	}
	return nil
}

// publishAttempts bounds Publish's tries: enough to get past every stale pooled connection
// of a small pool, few enough to give up quickly when the database is really down.
const publishAttempts = 3

// Subscribe returns the end user's events, from every instance, until ctx ends, when the
// channel is closed. Subscribing while the listener reconnects is fine: events resume
// once it is back.
func (b *Bus) Subscribe(ctx context.Context, referenceID string) (<-chan events.Event, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	return b.local.Subscribe(ctx, referenceID)
}

// Listen calls deliver with the end user's events, from every instance, until ctx ends; as
// with Subscribe, listening while the listener reconnects is fine.
func (b *Bus) Listen(ctx context.Context, referenceID string, deliver func(events.Event)) error {
	if b.closed.Load() {
		return ErrClosed
	}
	return b.local.Listen(ctx, referenceID, deliver)
}

// Subscribers counts this instance's subscriptions and listeners.
func (b *Bus) Subscribers() int { return b.local.Subscribers() }

// Dropped counts the events this instance's slow subscribers missed.
func (b *Bus) Dropped() int64 { return b.local.Dropped() }

// Connected reports whether the listener is listening: for readiness checks, since an
// instance that is not hears none of the events of its subscribers.
func (b *Bus) Connected() bool { return b.connected.Load() }

// Close stops the listener and waits for it. Subscriptions end with their own contexts.
func (b *Bus) Close() {
	b.closing.Do(func() {
		b.closed.Store(true)
		b.stop()
		<-b.done
	})
}

// connect opens the listening connection and listens, recording its backend.
func (b *Bus) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, b.config)
	if err != nil {
		return nil, fmt.Errorf("pgnotify: connect listener: %w", err)
	}
	if _, err := conn.Exec(ctx, b.listen); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("pgnotify: %s: %w", b.listen, err)
	}
	b.pid.Store(conn.PgConn().PID())
	b.connected.Store(true)
	return conn, nil
}

// run owns the listening connection: it receives until the connection fails, then
// reconnects with backoff, until ctx ends.
func (b *Bus) run(ctx context.Context, conn *pgx.Conn) {
	defer close(b.done)
	for {
		err := b.receive(ctx, conn)
		b.connected.Store(false)
		closeConn(conn)
		if ctx.Err() != nil {
			return
		}
		lost := time.Now()
		b.log.Warn("event listener disconnected; events are not delivered until it reconnects",
			"pid", b.pid.Load(), "err", err)
		for attempt := 0; ; attempt++ {
			wait := backoff(attempt, b.opts.MinBackoff, b.opts.MaxBackoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			conn, err = b.connect(ctx)
			if err == nil {
				b.log.Info("event listener reconnected", "pid", b.pid.Load(),
					"attempts", attempt+1, "down", time.Since(lost).Round(time.Millisecond))
				break
			}
			if ctx.Err() != nil {
				return
			}
			b.log.Warn("event listener reconnect failed", "attempt", attempt+1, "err", err)
		}
	}
}

// receive hands every notification to the local subscribers until the connection fails or
// ctx ends.
func (b *Bus) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, b.opts.PingInterval)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			b.deliver(ctx, n)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			// A quiet channel is normal; a ping tells it from a dead peer. pgx keeps the
			// connection usable after a deadline, and buffers any notification that
			// arrives during the ping for the next wait.
			pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		default:
			return err
		}
	}
}

// deliver decodes one notification and hands it to the subscribers of its end user. Any
// session on the database can NOTIFY this channel, so a payload is trusted no further than
// it validates: a malformed one is dropped rather than reaching, say, the subscribers of
// an empty reference id or a GraphQL enum it is not part of.
func (b *Bus) deliver(ctx context.Context, n *pgconn.Notification) {
	if n.Channel != b.opts.Channel {
		return
	}
	var ev events.Event
	err := json.Unmarshal([]byte(n.Payload), &ev)
	if err == nil {
		err = validate(ev)
	}
	if err != nil {
		// The payload itself is not logged: it may name end users.
		b.log.WarnContext(ctx, "malformed event ignored", "from_pid", n.PID, "bytes", len(n.Payload), "err", err)
		return
	}
	_ = b.local.Publish(ctx, ev) // never fails, never blocks
}

// validate checks an event carries what its subscribers read: the end user always, and
// the id that the event's type is about.
func validate(ev events.Event) error {
	if ev.ReferenceID == "" {
		return fmt.Errorf("%w: no reference id", ErrInvalidEvent)
	}
	switch ev.Type {
	case events.Connected, events.Disconnected, events.Revoked, events.Error,
		events.PermissionsChanged, events.Reauthenticated:
		if ev.UserID == "" {
			return fmt.Errorf("%w: %s without a user id", ErrInvalidEvent, ev.Type)
		}
	case events.SessionChanged:
		if ev.SessionID == "" {
			return fmt.Errorf("%w: %s without a session id", ErrInvalidEvent, ev.Type)
		}
	default:
		return fmt.Errorf("%w: unknown type %q", ErrInvalidEvent, ev.Type)
	}
	return nil
}

// backoff is the wait before reconnection attempt n (from 0): exponential from lo, capped
// at hi, with half of it random so instances that lost the database together do not
// reconnect in lockstep, and half fixed so the wait never collapses to nothing.
func backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

// closeConn ends a listening session, politely if the server still answers.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
