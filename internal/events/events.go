// Package events carries changes to end users' connections and widget sessions to the
// subscribers of the same end user. Events hold ids only: a receiver reads the current row
// from the store, so a bus spanning several instances (PostgreSQL LISTEN/NOTIFY) can carry
// them as they are.
package events

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Type is what happened.
type Type string

// Connection event types (the GraphQL ConnectionEventType) and the session change type.
const (
	Connected          Type = "CONNECTED"
	Disconnected       Type = "DISCONNECTED"
	Revoked            Type = "REVOKED"
	Error              Type = "ERROR"
	PermissionsChanged Type = "PERMISSIONS_CHANGED"
	Reauthenticated    Type = "REAUTHENTICATED"
	SessionChanged     Type = "SESSION_CHANGED"
)

// Event is one change for one end user.
type Event struct {
	ReferenceID string    `json:"r"`           // the end user it belongs to
	Type        Type      `json:"t"`           // what happened
	UserID      string    `json:"u,omitempty"` // the Terra user, for connection events
	SessionID   string    `json:"s,omitempty"` // the widget session, for SessionChanged
	At          time.Time `json:"a"`
}

// Bus delivers events to the subscribers of the event's end user.
type Bus interface {
	// Publish hands the event to every current subscriber of its end user.
	Publish(ctx context.Context, ev Event) error
	// Subscribe returns the end user's events until ctx ends, when the channel is closed.
	Subscribe(ctx context.Context, referenceID string) (<-chan Event, error)
	// Listen calls deliver with each of the end user's events, in the order they were
	// published, until ctx ends. Calls for one listener never overlap, and run on a
	// goroutine that exists only while the listener has events waiting: an idle listener
	// costs no goroutine and no buffer, which Subscribe's reader would.
	Listen(ctx context.Context, referenceID string, deliver func(Event)) error
	// Subscribers counts the subscriptions and listeners this instance serves, and Dropped
	// the events slow subscribers missed since start: the bus's metrics.
	Subscribers() int
	Dropped() int64
}

// subscriberBuffer is how many events a slow subscriber may fall behind before it misses
// some. An end user's connections change a few times a day, a handful at once at most (a
// re-authentication is two, a sync one per connection), so this is never reached in
// practice; and every idle Subscribe channel holds a buffer this big, so it stays small
// (a listener's queue is only allocated while events wait in it).
const subscriberBuffer = 16

// Local is the in-process Bus: enough for one instance.
type Local struct {
	log *slog.Logger
	mu  sync.Mutex
	// subs are each end user's subscribers: a handful at most (one per open page), and
	// mostly one, which a slice holds in a pointer where a set would take a map.
	subs    map[string][]*subscriber
	dropped atomic.Int64
}

// subscriber is a Subscribe channel (ch) or a listener (deliver and its queue).
type subscriber struct {
	ch chan Event

	ctx     context.Context
	deliver func(Event)
	qmu     sync.Mutex
	queue   []Event // waiting for deliver; nil while idle
	running bool    // a goroutine is draining queue
}

// offer hands ev to the subscriber without blocking, and reports whether it took it.
func (s *subscriber) offer(ev Event) bool {
	if s.ch != nil {
		select {
		case s.ch <- ev:
			return true
		default:
			return false
		}
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if len(s.queue) >= subscriberBuffer {
		return false
	}
	s.queue = append(s.queue, ev)
	if !s.running {
		s.running = true
		go s.drain()
	}
	return true
}

// drain delivers the queued events one at a time, and ends (dropping its queue) once
// there are none left or the listener's context has ended.
func (s *subscriber) drain() {
	for {
		s.qmu.Lock()
		if len(s.queue) == 0 || s.ctx.Err() != nil {
			s.queue = nil
			s.running = false
			s.qmu.Unlock()
			return
		}
		ev := s.queue[0]
		s.queue = s.queue[1:]
		s.qmu.Unlock()
		s.deliver(ev)
	}
}

// NewLocal returns an empty in-process bus.
func NewLocal(log *slog.Logger) *Local {
	return &Local{log: log, subs: map[string][]*subscriber{}}
}

// Publish never blocks: a subscriber whose buffer is full misses the event (and it is
// logged), rather than holding up the webhook that caused it.
func (b *Local) Publish(ctx context.Context, ev Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.subs[ev.ReferenceID] {
		if !s.offer(ev) {
			b.dropped.Add(1)
			b.log.WarnContext(ctx, "event dropped for a slow subscriber", "type", ev.Type)
		}
	}
	return nil
}

// Subscribe registers a subscriber until ctx ends.
func (b *Local) Subscribe(ctx context.Context, referenceID string) (<-chan Event, error) {
	s := &subscriber{ch: make(chan Event, subscriberBuffer)}
	b.add(ctx, referenceID, s)
	return s.ch, nil
}

// Listen registers a listener until ctx ends.
func (b *Local) Listen(ctx context.Context, referenceID string, deliver func(Event)) error {
	b.add(ctx, referenceID, &subscriber{ctx: ctx, deliver: deliver})
	return nil
}

// add registers s until ctx ends.
func (b *Local) add(ctx context.Context, referenceID string, s *subscriber) {
	b.mu.Lock()
	b.subs[referenceID] = append(b.subs[referenceID], s)
	b.mu.Unlock()

	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if rest := slices.DeleteFunc(b.subs[referenceID], func(o *subscriber) bool { return o == s }); len(rest) > 0 {
			b.subs[referenceID] = rest
		} else {
			delete(b.subs, referenceID)
		}
		if s.ch != nil {
			// Closed under the lock, so Publish can never send on a closed channel.
			close(s.ch)
		}
	})
}

// Subscribers counts the current subscriptions and listeners.
func (b *Local) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, set := range b.subs {
		n += len(set)
	}
	return n
}

// Dropped counts events missed by slow subscribers.
func (b *Local) Dropped() int64 { return b.dropped.Load() }
