package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"
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
	closeForbidden     = 4403 // connection_init refused: clients stop rather than retry at once
	closeDuplicateID   = 4409 // a subscribe reused the id of a running operation
	closeProtocolError = websocket.StatusProtocolError
)

// wsWriteTimeout bounds one message to a client: a client that stops reading is dropped
// rather than holding its operations' goroutines forever.
const wsWriteTimeout = 10 * time.Second

// wsReadLimit is the largest message read from a client (gqlgen's default).
const wsReadLimit = 1 << 20

// wsTransport serves GraphQL operations over WebSocket, in both subprotocols. It replaces
// gqlgen's transport.Websocket, which runs a keep-alive goroutine and a close-on-cancel
// goroutine for every connection: here the connection's only goroutine is the one that
// reads it (net/http's, which serves the upgrade), timers send the pings, and
// context.AfterFunc closes it when its context ends. Each running operation has a
// goroutine of its own, as with gqlgen, that blocks on its resolver's channel.
type wsTransport struct {
	// origins may open connections from a browser besides this server's own origin.
	origins []string
	// init authenticates connection_init's payload; an error refuses the connection with
	// 4403 Forbidden.
	init func(ctx context.Context, payload transport.InitPayload) (context.Context, error)
	// initTimeout is how long a client may take to send connection_init.
	initTimeout time.Duration
	// keepAlive is the interval of "ka" (legacy) or "ping" (graphql-transport-ws); a
	// graphql-transport-ws client that has not answered a ping within two intervals is
	// dropped.
	keepAlive time.Duration
}

var _ graphql.Transport = wsTransport{}

// Supports takes every upgrade request; anything but a WebSocket handshake is refused by
// the handshake itself.
func (t wsTransport) Supports(r *http.Request) bool { return r.Header.Get("Upgrade") != "" }

// Do upgrades the request and serves the connection until it ends, on the request's
// goroutine; the connection ends with the request's context (the server's shutdown).
func (t wsTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:   []string{protoLegacyWS, protoTransportWS},
		OriginPatterns: t.origins,
	})
	if err != nil {
		return // Accept has answered (403 for a foreign origin, 400 for a bad handshake)
	}
	conn.SetReadLimit(wsReadLimit)
	c := &wsConn{
		t:       t,
		conn:    conn,
		legacy:  conn.Subprotocol() != protoTransportWS,
		exec:    exec,
		headers: r.Header,
		ops:     map[string]*wsOp{},
	}
	c.ctx, c.cancel = context.WithCancel(r.Context())
	defer c.cancel()
	if c.initialize() {
		c.serve()
	}
}

// wsConn is one WebSocket connection.
type wsConn struct {
	t       wsTransport
	conn    *websocket.Conn
	legacy  bool // graphql-ws rather than graphql-transport-ws
	exec    graphql.GraphExecutor
	headers http.Header
	// ctx is the connection's (after connection_init, the caller's); cancel ends the
	// connection and every operation on it.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	ops      map[string]*wsOp // running operations by the client's id
	closed   bool
	pongSeen bool        // since the last ping
	beat     *time.Timer // the next keep-alive or ping
	deadline *time.Timer // drops a graphql-transport-ws client that stopped answering pings
}

// wsOp is one running operation.
type wsOp struct{ cancel context.CancelFunc }

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
	ctx, cancel := context.WithTimeout(context.Background(), wsWriteTimeout)
	defer cancel()
	_ = c.conn.Write(ctx, websocket.MessageText, b)
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
	if c.deadline != nil {
		c.deadline.Stop()
	}
	c.cancel()
	return true
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
	ctx, err := c.t.init(c.ctx, payload)
	if err != nil {
		c.connectionError("%s", err.Error())
		c.close(closeForbidden, "Forbidden")
		return false
	}
	c.ctx = ctx
	c.send("connection_ack", "", nil)
	if c.legacy {
		c.send("ka", "", nil)
	}
	return true
}

// serve reads the client's messages until the connection ends.
func (c *wsConn) serve() {
	// The server's shutdown (or the end of the request) closes the connection properly.
	context.AfterFunc(c.ctx, func() { c.close(websocket.StatusNormalClosure, "terminated") })
	c.startBeats()
	for {
		start := graphql.Now()
		m, err := c.read()
		if err != nil {
			if errors.Is(err, errNotJSON) {
				c.connectionError("invalid json")
				c.close(closeProtocolError, "decoding error")
			}
			c.cancel()
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
			c.pongSeen = true
			if c.deadline != nil {
				c.deadline.Stop()
			}
			c.mu.Unlock()
		case m.Type == "connection_terminate" && c.legacy:
			c.close(websocket.StatusNormalClosure, "terminated")
			return
		default:
			c.connectionError("unexpected message %s", m.Type)
			c.close(closeProtocolError, "unexpected message")
			return
		}
	}
}

// startBeats starts the keep-alives: "ka" every interval for legacy clients; for
// graphql-transport-ws a ping every interval, and a deadline two intervals after the
// first ping that an answer clears, renewed by the next ping.
func (c *wsConn) startBeats() {
	every := c.t.keepAlive
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if !c.legacy {
		c.deadline = time.AfterFunc(2*every, c.drop)
	}
	c.beat = time.AfterFunc(every, func() {
		if c.legacy {
			c.send("ka", "", nil)
		} else {
			c.send("ping", "", nil)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed {
			return
		}
		if !c.legacy && c.pongSeen {
			c.deadline.Reset(2 * every)
			c.pongSeen = false
		}
		c.beat.Reset(every)
	})
}

// start runs one operation (a subscription, or a query or mutation answered once).
func (c *wsConn) start(id string, payload json.RawMessage, readStart time.Time) {
	ctx := graphql.StartOperationTrace(c.ctx)
	params := &graphql.RawParams{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(params); err != nil {
		c.sendErrors(id, &gqlerror.Error{Message: "invalid json"})
		c.send("complete", id, nil)
		return
	}
	params.ReadTime = graphql.TraceTiming{Start: readStart, End: graphql.Now()}
	params.Headers = c.headers

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
	op := &wsOp{cancel: cancel}
	c.mu.Lock()
	_, dup := c.ops[id]
	if !dup {
		c.ops[id] = op
	}
	c.mu.Unlock()
	if dup {
		cancel()
		c.close(closeDuplicateID, "Subscriber for "+id+" already exists")
		return
	}
	go c.run(ctx, op, id, rc)
}

// run sends the operation's responses until it ends, then completes it.
func (c *wsConn) run(ctx context.Context, op *wsOp, id string, rc *graphql.OperationContext) {
	defer func() {
		if r := recover(); r != nil {
			var gqlErr *gqlerror.Error
			if err := rc.Recover(ctx, r); !errors.As(err, &gqlErr) {
				gqlErr = &gqlerror.Error{}
				if err != nil {
					gqlErr.Message = err.Error()
				}
			}
			c.sendErrors(id, gqlErr)
		}
		// A connection that ends closes the socket; complete would signal a normal end.
		if c.ctx.Err() == nil {
			c.send("complete", id, nil)
		}
		c.forget(id, op)
	}()
	responses, ctx := c.exec.DispatchOperation(ctx, rc)
	for {
		resp := responses(ctx)
		if resp == nil {
			return
		}
		c.sendResponse(id, resp)
	}
}

// stop ends the client's operation id; its id may be used again at once.
func (c *wsConn) stop(id string) {
	c.mu.Lock()
	op := c.ops[id]
	delete(c.ops, id)
	c.mu.Unlock()
	if op != nil {
		op.cancel()
	}
}

// forget removes op, unless a new operation has taken its id since.
func (c *wsConn) forget(id string, op *wsOp) {
	c.mu.Lock()
	if c.ops[id] == op {
		delete(c.ops, id)
	}
	c.mu.Unlock()
	op.cancel()
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
