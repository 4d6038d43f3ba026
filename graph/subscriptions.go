package graph

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/terragate/terragate/graph/model"
	"github.com/terragate/terragate/internal/events"
	"github.com/terragate/terragate/internal/fault"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/widget"
	"github.com/terragate/terragate/internal/wsgraphql"
)

// ErrTooManySubscriptions refuses a subscription beyond the per-connection cap.
var ErrTooManySubscriptions = fault.New(fault.TooManySubscriptions, "too many subscriptions on this connection")

type slotsKey struct{}

// slots counts one WebSocket connection's running subscriptions.
type slots struct {
	max  int64
	used atomic.Int64
}

// withSlots gives a WebSocket connection its subscription budget.
func withSlots(ctx context.Context, max int) context.Context {
	return context.WithValue(ctx, slotsKey{}, &slots{max: int64(max)})
}

// acquire takes one subscription slot of the connection; release gives it back.
func (r *Resolver) acquire(ctx context.Context) (release func(), err error) {
	s, _ := ctx.Value(slotsKey{}).(*slots)
	if s != nil && s.used.Add(1) > s.max {
		s.used.Add(-1)
		return nil, fmt.Errorf("%w (at most %d)", ErrTooManySubscriptions, s.max)
	}
	r.Metrics.SubscriptionOpened()
	return func() {
		r.Metrics.SubscriptionClosed()
		if s != nil {
			s.used.Add(-1)
		}
	}, nil
}

// watchConnections streams the end user's connection events. Every event is read back from
// the store and checked to be the caller's before it is sent. The bus delivers straight into
// the channel gqlgen reads, on a goroutine that lives only while an event is on its way, and
// tells our WebSocket transport (wsgraphql.StreamNotify) so that it reads the channel only then: an
// idle subscription holds no goroutine at all.
func (r *Resolver) watchConnections(ctx context.Context, referenceID string) (<-chan *model.ConnectionEvent, error) {
	release, err := r.acquire(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan *model.ConnectionEvent, 1)
	notify, unclaim := wsgraphql.StreamNotify(ctx)
	deliver := func(ev events.Event) {
		if ev.Type == events.SessionChanged || ev.UserID == "" {
			return
		}
		u, err := r.Connections.Get(ctx, referenceID, ev.UserID)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
				r.Log.WarnContext(ctx, "connection event not sent", "err", err)
			}
			return
		}
		msg := &model.ConnectionEvent{Type: model.ConnectionEventType(ev.Type), TerraUser: terraUser(u), At: ev.At}
		select {
		case out <- msg:
			notify()
		case <-ctx.Done():
		}
	}
	if err := r.Bus.Listen(ctx, referenceID, deliver); err != nil {
		unclaim()
		release()
		return nil, err
	}
	// gqlgen stops reading when ctx ends, so out needs no close: it is simply dropped.
	context.AfterFunc(ctx, release)
	return out, nil
}

// watchSession pushes one of the end user's sessions each time its status changes, the
// current state first, and completes once the status is final. Someone else's session is
// NOT_FOUND, exactly as an unknown one.
func (r *Resolver) watchSession(ctx context.Context, referenceID, id string) (<-chan *model.WidgetSession, error) {
	release, err := r.acquire(ctx)
	if err != nil {
		return nil, err
	}
	// Subscribe before the first read, so a change between the two is not missed.
	subCtx, cancel := context.WithCancel(ctx)
	in, err := r.Bus.Subscribe(subCtx, referenceID)
	if err != nil {
		cancel()
		release()
		return nil, err
	}
	sess, err := r.Widgets.Session(ctx, referenceID, id)
	if err != nil {
		cancel()
		release()
		return nil, err
	}
	out := make(chan *model.WidgetSession, 1)
	go func() {
		defer release()
		defer cancel()
		defer close(out)
		var last store.SessionStatus
		expiry := time.NewTimer(time.Until(sess.ExpiresAt))
		defer expiry.Stop()
		for {
			status := widget.EffectiveStatus(sess, r.now())
			if status != last {
				last = status
				select {
				case out <- widgetSession(sess, r.now()):
				case <-ctx.Done():
					return
				}
			}
			if widget.Final(status) {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-expiry.C:
			case ev, ok := <-in:
				if !ok {
					return
				}
				if ev.Type != events.SessionChanged || ev.SessionID != id {
					continue
				}
			}
			fresh, err := r.Widgets.Session(ctx, referenceID, id)
			if err != nil {
				if ctx.Err() == nil {
					r.Log.WarnContext(ctx, "widget session not re-read", "err", err)
				}
				continue
			}
			sess = fresh
		}
	}()
	return out, nil
}
