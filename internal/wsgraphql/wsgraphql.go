// Package wsgraphql serves GraphQL over WebSocket for gqlgen, in both subprotocols
// (graphql-transport-ws and the legacy graphql-ws), with an idle subscriber costing one
// small goroutine: see Transport.
package wsgraphql

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"
	"unique"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/terragate/terragate/internal/trusted"
)

// The two GraphQL-over-WebSocket subprotocols: graphql-transport-ws (the graphql-ws
// library's protocol, which pings and expects pongs) and the legacy graphql-ws of
// subscriptions-transport-ws (which sends one-way "ka" keep-alives). A client that names
// neither gets the legacy one, as gqlgen's transport did.
const (
	protoTransportWS = "graphql-transport-ws"
	protoLegacyWS    = "graphql-ws"
)

// Close codes besides the RFC 6455 ones.
const (
	closeForbidden     = 4403 // connection_init refused, or its token expired since: clients stop rather than retry at once
	closeDuplicateID   = 4409 // a subscribe reused the id of a running operation
	closeProtocolError = websocket.StatusProtocolError
)

// wsBufferSize sizes each connection's read and write buffers. GraphQL messages are a few
// hundred bytes; larger ones bypass the buffers (bufio reads and writes them directly).
const wsBufferSize = 512

// InitFunc authenticates connection_init's payload and says when the credentials lapse
// (zero: never); an error refuses the connection with 4403 Forbidden. The context it
// returns is every operation's on the connection.
type InitFunc func(ctx context.Context, payload transport.InitPayload) (context.Context, time.Time, error)

// Config is what a Transport needs; New fills in the defaults of the zero fields.
type Config struct {
	// Origins may open connections from a browser besides this server's own origin
	// (coder/websocket's patterns, e.g. "app.example.com" or "*.example.com").
	Origins []string
	// Init authenticates connections (nil: every connection is accepted as it is).
	Init InitFunc
	// InitTimeout is how long a client may take to send connection_init (default 10 s).
	InitTimeout time.Duration
	// KeepAlive is the interval of "ka" (legacy) or "ping" (graphql-transport-ws); a
	// graphql-transport-ws client that has not answered a ping within two intervals is
	// dropped (default 15 s).
	KeepAlive time.Duration
	// WriteTimeout bounds one message to a client: a client that stops reading is dropped
	// rather than holding its operations forever (default 10 s).
	WriteTimeout time.Duration
	// ReadLimit is the largest message read from a client; a larger one closes the
	// connection with 1009 (default 1 MB, gqlgen's).
	ReadLimit int64
}

// Transport serves GraphQL operations over WebSocket, in both subprotocols. It replaces
// gqlgen's transport.Websocket to make an idle subscriber cheap: gqlgen holds net/http's
// handler goroutine (its deep stack, its 4 KB read and write buffers, the request) for the
// connection's life, and runs a keep-alive goroutine, a close-on-cancel goroutine and one
// goroutine per operation. Here the handler returns once the connection is upgraded; the
// connection's one goroutine reads it, over small buffers; timers send the pings; and a
// subscription whose resolver takes StreamNotify holds no goroutine while it waits: the
// transport reads its channel only when told a value is in it.
type Transport struct {
	origins      []string
	init         InitFunc
	initTimeout  time.Duration
	keepAlive    time.Duration
	writeTimeout time.Duration
	readLimit    int64
	// open are the connections, closed when the server shuts down.
	open *wsConns
}

// New returns a Transport for gqlgen's handler.Server.AddTransport. Connections it upgrades
// are closed (1000, "terminated") when the http.Server that served their upgrade shuts down.
func New(cfg Config) *Transport {
	t := &Transport{
		origins:      slices.Clone(cfg.Origins),
		init:         cfg.Init,
		initTimeout:  cmp.Or(cfg.InitTimeout, 10*time.Second),
		keepAlive:    cmp.Or(cfg.KeepAlive, 15*time.Second),
		writeTimeout: cmp.Or(cfg.WriteTimeout, 10*time.Second),
		readLimit:    cmp.Or(cfg.ReadLimit, 1<<20),
		open:         newWSConns(),
	}
	if t.init == nil {
		t.init = func(ctx context.Context, _ transport.InitPayload) (context.Context, time.Time, error) {
			return ctx, time.Time{}, nil
		}
	}
	return t
}

var _ graphql.Transport = (*Transport)(nil)

// Supports takes every upgrade request; anything but a WebSocket handshake is refused by
// the handshake itself.
func (t *Transport) Supports(r *http.Request) bool { return r.Header.Get("Upgrade") != "" }

// Do upgrades the request and hands the connection to a goroutine of its own. The
// connection outlives the request, so its context keeps the request's values (the
// request id) but not its cancellation; the server's Shutdown closes it instead.
func (t *Transport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	bufs := &smallBuffers{ResponseWriter: w}
	conn, err := websocket.Accept(bufs, r, &websocket.AcceptOptions{
		Subprotocols:   []string{protoLegacyWS, protoTransportWS},
		OriginPatterns: t.origins,
	})
	if err != nil {
		return // Accept has answered (403 for a foreign origin, 400 for a bad handshake)
	}
	conn.SetReadLimit(t.readLimit)
	c := &wsConn{
		t:      t,
		conn:   conn,
		raw:    bufs.raw,
		br:     bufs.br,
		legacy: conn.Subprotocol() != protoTransportWS,
		exec:   exec,
		nc:     bufs.nc,
		ctx:    context.WithoutCancel(r.Context()),
	}
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	t.open.add(srv, c)
	go func() {
		if !c.initialize() {
			c.end()
			return
		}
		c.startBeats()
		go c.serve() // on a fresh, small stack: see serve
	}()
}

// end releases what the connection holds once it is over.
func (c *wsConn) end() {
	if c.markClosed() {
		_ = c.conn.CloseNow()
	}
	c.t.open.remove(c)
}

// smallBuffers gives coder/websocket buffers of wsBufferSize in place of the hijacked
// connection's 4 KB pair, which net/http frees with the rest of its per-connection state
// once the handler returns. It keeps the reader and the socket, for awaitMessage.
type smallBuffers struct {
	http.ResponseWriter
	nc  net.Conn
	br  *bufio.Reader
	raw syscall.RawConn // nil if the connection is not a socket of its own (TLS)
}

func (w *smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// Whatever the client sent after its handshake is in net/http's reader: move it over.
	var src io.Reader = conn
	n := brw.Reader.Buffered()
	if n > 0 {
		rest, _ := brw.Reader.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(rest)), conn)
	}
	w.br = bufio.NewReaderSize(src, max(wsBufferSize, n))
	if n > 0 {
		_, _ = w.br.Peek(n)
	}
	w.nc = conn
	w.raw = peekable(conn)
	return conn, bufio.NewReadWriter(w.br, bufio.NewWriterSize(conn, wsBufferSize)), nil
}

// wsConns are the open connections of one handler. Hijacked connections are not the
// http.Server's to close, so each server that hands the handler an upgrade is asked to
// close them when it shuts down.
type wsConns struct {
	mu      sync.Mutex
	conns   map[*wsConn]struct{}
	servers map[*http.Server]bool
}

func newWSConns() *wsConns {
	return &wsConns{conns: map[*wsConn]struct{}{}, servers: map[*http.Server]bool{}}
}

func (o *wsConns) add(srv *http.Server, c *wsConn) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if srv != nil && !o.servers[srv] {
		o.servers[srv] = true
		srv.RegisterOnShutdown(o.closeAll)
	}
	o.conns[c] = struct{}{}
}

func (o *wsConns) remove(c *wsConn) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.conns, c)
}

// closeAll closes every connection normally, ending its subscriptions.
func (o *wsConns) closeAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for c := range o.conns {
		c.close(websocket.StatusNormalClosure, "terminated")
	}
}

// wsConn is one WebSocket connection.
type wsConn struct {
	t      *Transport
	conn   *websocket.Conn
	nc     net.Conn        // conn's connection, for its write deadline
	br     *bufio.Reader   // conn's: what the client sent and conn has not read yet
	raw    syscall.RawConn // conn's socket, or nil
	legacy bool            // graphql-ws rather than graphql-transport-ws
	exec   graphql.GraphExecutor
	// ctx carries the connection's values (after connection_init, the caller). It is
	// never cancelled: closing the connection cancels each operation instead, which spares
	// every connection a cancelCtx and the map of its children.
	ctx context.Context

	mu sync.Mutex
	// ops are the running operations, a few at most: a slice costs a pointer each where a
	// map would cost a few hundred bytes.
	ops     []*wsOp
	writing int // messages being written
	closed  bool
	// lapseDue is set while beat is due at the lapse rather than at a keep-alive.
	lapseDue bool
	// beat is the next keep-alive or ping, or the lapse of the caller's credentials if
	// that comes first; unanswered counts the pings sent since the client's last pong.
	beat       *time.Timer
	unanswered int
	// lapses is when the caller's credentials (a token's exp) stop being accepted; zero
	// for credentials that do not expire. Nothing is written from then on.
	lapses time.Time
}

// reasonLapsed is the close reason when the caller's token expires.
const reasonLapsed = "token expired"

// lapsed reports whether the caller's credentials are no longer accepted. c.mu is held.
func (c *wsConn) lapsed() bool {
	return !c.lapses.IsZero() && !time.Now().Before(c.lapses)
}

// wsMessage is a message of either subprotocol.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

var errNotJSON = errors.New("message is not JSON")

// read returns the next message from the client.
func (c *wsConn) read() (wsMessage, error) {
	_, b, err := c.conn.Read(context.Background())
	if err != nil {
		return wsMessage{}, err
	}
	var m wsMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return wsMessage{}, errNotJSON
	}
	return m, nil
}

// send writes one message; a failure closes the connection (coder/websocket does), which
// ends the read loop and with it everything else.
func (c *wsConn) send(typ, id string, payload json.RawMessage) {
	b, err := json.Marshal(wsMessage{ID: id, Type: typ, Payload: payload})
	if err != nil {
		panic(err) // payloads are marshalled JSON
	}
	// The timeout is the connection's write deadline rather than a context's:
	// coder/websocket keeps the last write's context until the next write, a timer and two
	// allocations held by every idle connection. Writes may overlap (operations, pings):
	// each extends the deadline, and the last to end clears it, for coder/websocket's own
	// writes (pongs, the close frame).
	c.mu.Lock()
	// The timer closes the connection when the credentials lapse, but may run late, or
	// race an event already on its way: whatever is sent after the lapse closes it here.
	if c.lapsed() {
		c.mu.Unlock()
		c.close(closeForbidden, reasonLapsed)
		return
	}
	c.writing++
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.t.writeTimeout))
	c.mu.Unlock()
	err = c.conn.Write(context.Background(), websocket.MessageText, b)
	c.mu.Lock()
	if c.writing--; c.writing == 0 {
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	c.mu.Unlock()
	if err != nil {
		c.drop()
	}
}

// connectionError tells a legacy client why its connection ends (graphql-transport-ws has
// no such message: the close reason says it).
func (c *wsConn) connectionError(format string, args ...any) {
	if !c.legacy {
		return
	}
	b, _ := json.Marshal(&gqlerror.Error{Message: fmt.Sprintf(format, args...)})
	c.send("connection_error", "", b)
}

// close ends the connection with a close frame, once. The close handshake waits for the
// client (up to 5 s in coder/websocket), so it runs in the background.
func (c *wsConn) close(code websocket.StatusCode, reason string) {
	if !c.markClosed() {
		return
	}
	go func() { _ = c.conn.Close(code, reason) }()
}

// drop ends the connection without a close frame: the client has stopped answering.
func (c *wsConn) drop() {
	if c.markClosed() {
		_ = c.conn.CloseNow()
	}
}

// markClosed stops the timers and every operation, and reports whether this call did.
func (c *wsConn) markClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.closed = true
	if c.beat != nil {
		c.beat.Stop()
	}
	for _, op := range c.ops {
		op.end()
	}
	return true
}

// isClosed reports whether the connection is ending.
func (c *wsConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// op returns the running operation id, or nil.
func (c *wsConn) op(id string) *wsOp {
	for _, op := range c.ops {
		if op.id == id {
			return op
		}
	}
	return nil
}

// forget removes op from the running operations.
func (c *wsConn) forget(op *wsOp) {
	c.ops = slices.DeleteFunc(c.ops, func(o *wsOp) bool { return o == op })
	if len(c.ops) == 0 {
		c.ops = nil
	}
}

// initialize waits for connection_init and authenticates it, and reports whether the
// connection may go on.
func (c *wsConn) initialize() bool {
	timeout := time.AfterFunc(c.t.initTimeout, func() { c.close(closeProtocolError, "connection initialisation timeout") })
	m, err := c.read()
	timeout.Stop()
	if err != nil {
		if errors.Is(err, errNotJSON) {
			c.connectionError("invalid json")
		}
		c.close(closeProtocolError, "decoding error")
		return false
	}
	switch m.Type {
	case "connection_init":
	case "connection_terminate":
		c.close(websocket.StatusNormalClosure, "terminated")
		return false
	default:
		c.connectionError("unexpected message %s", m.Type)
		c.close(closeProtocolError, "unexpected message")
		return false
	}
	var payload transport.InitPayload
	if len(m.Payload) > 0 {
		if err := json.Unmarshal(m.Payload, &payload); err != nil {
			c.connectionError("invalid json")
			c.close(closeProtocolError, "decoding error")
			return false
		}
	}
	ctx, lapses, err := c.t.init(c.ctx, payload)
	if err != nil {
		c.connectionError("%s", err.Error())
		c.close(closeForbidden, "Forbidden")
		return false
	}
	c.ctx = ctx
	c.mu.Lock()
	c.lapses = lapses
	c.mu.Unlock()
	c.send("connection_ack", "", nil)
	if c.legacy {
		c.send("ka", "", nil)
	}
	return true
}

// serve reads the client's messages until the connection ends. Reading a message through
// coder/websocket, authenticating a client and starting an operation (parsing, validating,
// running the resolver) all take stacks deeper than a goroutine's first 2 KB, and Go only
// shrinks a stack by half at a garbage collection, which an idle server seldom runs. So a
// connection waits for its next message in awaitMessage, which needs only a few frames;
// and once it has read what the client sent, it waits again on a new goroutine, whose
// stack is still the first, small one.
func (c *wsConn) serve() {
	c.awaitMessage()
	for {
		start := graphql.Now()
		m, err := c.read()
		if err != nil {
			if errors.Is(err, errNotJSON) {
				c.connectionError("invalid json")
				c.close(closeProtocolError, "decoding error")
			}
			c.end()
			return
		}
		switch {
		case m.Type == "subscribe" && !c.legacy, m.Type == "start" && c.legacy:
			c.start(m.ID, m.Payload, start)
		case m.Type == "complete" && !c.legacy, m.Type == "stop" && c.legacy:
			c.stop(m.ID)
		case m.Type == "ping" && !c.legacy:
			c.send("pong", "", m.Payload)
		case m.Type == "pong" && !c.legacy:
			c.mu.Lock()
			c.unanswered = 0
			c.mu.Unlock()
		case m.Type == "connection_terminate" && c.legacy:
			c.close(websocket.StatusNormalClosure, "terminated")
			c.end()
			return
		default:
			c.connectionError("unexpected message %s", m.Type)
			c.close(closeProtocolError, "unexpected message")
			c.end()
			return
		}
		if !c.readable() {
			go c.serve()
			return
		}
	}
}

// readable reports whether a read need not wait for the client: it has sent more than
// conn has read, or the connection is closing (and the read ends it). Once closing,
// coder/websocket reads conn's reader itself, for the close handshake: c.mu orders this
// look at it before that.
func (c *wsConn) readable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed || c.raw == nil || c.br.Buffered() > 0
}

// awaitMessage returns once the client has sent something (or the socket is closed),
// without reading it: a peek at the socket, which the runtime's poller wakes.
func (c *wsConn) awaitMessage() {
	if c.readable() {
		return
	}
	peek(c.raw)
}

// startBeats starts the keep-alives: "ka" every interval for legacy clients; for
// graphql-transport-ws a ping every interval, or, once two pings in a row have gone
// unanswered for an interval each, the end of the connection. One timer does both, for
// it is one more allocation that every idle connection holds; and the same timer closes
// the connection (4403) when the caller's token expires, for a connection is
// authenticated only once and would otherwise outlive its token.
func (c *wsConn) startBeats() {
	every := c.t.keepAlive
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.beat = time.AfterFunc(c.nextBeat(every), func() {
		c.mu.Lock()
		if c.lapsed() {
			c.mu.Unlock()
			c.close(closeForbidden, reasonLapsed)
			return
		}
		if c.lapseDue {
			// Early by the wall clock, which exp is read against: wait on, no keep-alive.
			if !c.closed {
				c.beat.Reset(c.nextBeat(every))
			}
			c.mu.Unlock()
			return
		}
		silent := !c.legacy && c.unanswered >= 2
		if !c.legacy {
			c.unanswered++
		}
		c.mu.Unlock()
		switch {
		case silent:
			c.drop()
			return
		case c.legacy:
			c.send("ka", "", nil)
		default:
			c.send("ping", "", nil)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.closed {
			c.beat.Reset(c.nextBeat(every))
		}
	})
}

// nextBeat returns how long until the timer is due: the next keep-alive, every from now,
// or the lapse of the credentials if that is sooner. c.mu is held.
func (c *wsConn) nextBeat(every time.Duration) time.Duration {
	c.lapseDue = false
	if c.lapses.IsZero() {
		return every
	}
	if left := time.Until(c.lapses); left < every {
		c.lapseDue = true
		return left
	}
	return every
}

// start runs one operation (a subscription, or a query or mutation answered once).
// Operations carry no request headers: the caller is whoever connection_init named.
func (c *wsConn) start(id string, payload json.RawMessage, readStart time.Time) {
	ctx := graphql.StartOperationTrace(c.ctx)
	var p struct {
		graphql.RawParams
		DocumentID string `json:"documentId"`
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		c.sendErrors(id, &gqlerror.Error{Message: "invalid json"})
		c.send("complete", id, nil)
		return
	}
	params := &p.RawParams
	if p.DocumentID != "" {
		// A persisted document's id, as over HTTP: gqlgen's extensions look for it as the
		// persisted query's hash.
		params.Extensions = trusted.WithDocumentID(params.Extensions, p.DocumentID)
	}
	params.ReadTime = graphql.TraceTiming{Start: readStart, End: graphql.Now()}
	// The operation context keeps the query's text as long as the subscription runs: share
	// one copy of each text (the parsed document is shared already, by the query cache).
	params.Query = unique.Make(params.Query).Value()

	rc, errs := c.exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		if errcode.GetErrorKind(errs) == errcode.KindProtocol {
			c.sendErrors(id, resp.Errors...)
		} else {
			c.sendResponse(id, &graphql.Response{Errors: errs})
		}
		c.send("complete", id, nil)
		return
	}
	ctx, cancel := context.WithCancel(graphql.WithOperationContext(ctx, rc))
	op := &wsOp{c: c, id: id, rc: rc, cancel: cancel}
	c.mu.Lock()
	closed, dup := c.closed, c.op(id) != nil
	if !closed && !dup {
		c.ops = append(c.ops, op)
	}
	c.mu.Unlock()
	if closed {
		cancel()
		return
	}
	if dup {
		cancel()
		c.close(closeDuplicateID, "Subscriber for "+id+" already exists")
		return
	}
	// A subscription's resolver runs here, within DispatchOperation, and may take
	// StreamNotify.
	var responses graphql.ResponseHandler
	if !op.guard(func() { responses, ctx = c.exec.DispatchOperation(context.WithValue(ctx, notifyKey{}, op), rc) }) {
		return
	}
	if op.claimed {
		op.wait(responses, ctx)
		return
	}
	go func() {
		for !op.isFinished() {
			op.guard(func() { op.next(responses, ctx) })
		}
	}()
}

// notifyKey carries the running operation to its resolver, for StreamNotify.
type notifyKey struct{}

// StreamNotify is for a subscription resolver that knows when it puts a value in its
// channel: it calls notify after each such send (none is needed at the end: the end of the
// operation's context ends it), and the transport then reads the channel only when told,
// holding no goroutine while the subscription waits. It must be called before the resolver
// returns, and a resolver that then fails calls unclaim. When the operation is not this
// transport's, both do nothing and the channel is read the usual way, by a goroutine that
// waits on it.
func StreamNotify(ctx context.Context) (notify, unclaim func()) {
	op, _ := ctx.Value(notifyKey{}).(*wsOp)
	if op == nil {
		return func() {}, func() {}
	}
	op.claimed = true
	return op.notify, func() { op.claimed = false }
}

// wsOp is one running operation.
type wsOp struct {
	c       *wsConn
	id      string
	rc      *graphql.OperationContext
	cancel  context.CancelFunc
	claimed bool // by StreamNotify, within DispatchOperation

	mu        sync.Mutex
	responses graphql.ResponseHandler // once waiting for notifications
	ctx       context.Context
	pending   int  // values notified and not yet read
	running   bool // a goroutine is reading them
	finished  bool
}

// next reads one response and sends it, or finishes the operation when there is none.
func (o *wsOp) next(responses graphql.ResponseHandler, ctx context.Context) {
	if resp := responses(ctx); resp != nil {
		o.c.sendResponse(o.id, resp)
	} else {
		o.finish()
	}
}

// wait arranges for the operation's values to be read as they are notified, and for its
// end (see end) to finish it, after any value being read.
func (o *wsOp) wait(responses graphql.ResponseHandler, ctx context.Context) {
	o.mu.Lock()
	o.responses, o.ctx = responses, ctx
	o.mu.Unlock()
	o.wake() // for values notified, or the operation's end, while DispatchOperation ran
}

// end cancels the operation's context, which only this does (the connection's has no
// cancellation), and wakes a reader to finish it: no context.AfterFunc is needed.
func (o *wsOp) end() {
	o.cancel()
	o.wake()
}

// notify records one value in the channel and starts a reader unless one is running.
func (o *wsOp) notify() {
	o.mu.Lock()
	o.pending++
	o.mu.Unlock()
	o.wake()
}

// wake starts a reader when there is something to read or the operation has ended, unless
// one is running or the operation cannot have one yet.
func (o *wsOp) wake() {
	o.mu.Lock()
	start := o.responses != nil && (o.pending > 0 || o.ctx.Err() != nil) && !o.running && !o.finished
	o.running = o.running || start
	o.mu.Unlock()
	if start {
		go o.drain()
	}
}

// drain reads and sends the notified values, finishes the operation if its context has
// ended, then returns.
func (o *wsOp) drain() {
	for {
		o.mu.Lock()
		ended := o.ctx.Err() != nil
		if o.finished || (o.pending == 0 && !ended) {
			o.running = false
			o.mu.Unlock()
			return
		}
		if !ended {
			o.pending--
		}
		o.mu.Unlock()
		if ended {
			o.finish()
			continue
		}
		o.guard(func() { o.next(o.responses, o.ctx) })
	}
}

// guard runs f, and reports whether it returned; a panic is sent as the operation's error
// and finishes it.
func (o *wsOp) guard(f func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			var gqlErr *gqlerror.Error
			if err := o.rc.Recover(o.c.ctx, r); !errors.As(err, &gqlErr) {
				gqlErr = &gqlerror.Error{}
				if err != nil {
					gqlErr.Message = err.Error()
				}
			}
			o.c.sendErrors(o.id, gqlErr)
			o.finish()
		}
	}()
	f()
	return true
}

// finish completes the operation, once, and forgets it unless a new operation has taken
// its id since.
func (o *wsOp) finish() {
	o.mu.Lock()
	done := o.finished
	o.finished = true
	o.mu.Unlock()
	if done {
		return
	}
	// A connection that ends closes the socket; complete would signal a normal end.
	if !o.c.isClosed() {
		o.c.send("complete", o.id, nil)
	}
	o.c.mu.Lock()
	o.c.forget(o)
	o.c.mu.Unlock()
	o.cancel()
}

func (o *wsOp) isFinished() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.finished
}

// stop ends the client's operation id; its id may be used again at once.
func (c *wsConn) stop(id string) {
	c.mu.Lock()
	op := c.op(id)
	c.forget(op)
	c.mu.Unlock()
	if op != nil {
		op.end()
	}
}

func (c *wsConn) sendResponse(id string, resp *graphql.Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		panic(err)
	}
	if c.legacy {
		c.send("data", id, b)
	} else {
		c.send("next", id, b)
	}
}

func (c *wsConn) sendErrors(id string, errs ...*gqlerror.Error) {
	b, err := json.Marshal(errs)
	if err != nil {
		panic(err)
	}
	c.send("error", id, b)
}
