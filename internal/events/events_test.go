package events

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func TestLocalDeliversToTheSameUserOnly(t *testing.T) {
	b := NewLocal(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	alice, _ := b.Subscribe(ctx, "alice")
	alice2, _ := b.Subscribe(ctx, "alice")
	bob, _ := b.Subscribe(ctx, "bob")

	ev := Event{ReferenceID: "alice", Type: Connected, UserID: "u1", At: time.Now()}
	if err := b.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan Event{alice, alice2} {
		select {
		case got := <-ch:
			if got != ev {
				t.Errorf("got %+v", got)
			}
		case <-time.After(time.Second):
			t.Fatal("a subscriber of alice got nothing")
		}
	}
	select {
	case got := <-bob:
		t.Errorf("bob got alice's event %+v", got)
	default:
	}
}

func TestLocalUnsubscribesWhenTheContextEnds(t *testing.T) {
	b := NewLocal(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	ch, _ := b.Subscribe(ctx, "alice")
	if n := b.Subscribers(); n != 1 {
		t.Fatalf("%d subscribers", n)
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Error("an event arrived after cancel")
		}
	case <-time.After(time.Second):
		t.Fatal("the channel was not closed")
	}
	if n := b.Subscribers(); n != 0 {
		t.Errorf("%d subscribers left", n)
	}
	// Publishing after the subscriber left is fine and reaches no one.
	if err := b.Publish(context.Background(), Event{ReferenceID: "alice"}); err != nil {
		t.Error(err)
	}
}

func TestLocalNeverBlocksOnASlowSubscriber(t *testing.T) {
	b := NewLocal(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, _ = b.Subscribe(ctx, "alice") // never read
	done := make(chan struct{})
	go func() {
		for i := 0; i < subscriberBuffer+10; i++ {
			_ = b.Publish(ctx, Event{ReferenceID: "alice", Type: Error})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Publish blocked on a full subscriber")
	}
	if d := b.Dropped(); d != 10 {
		t.Errorf("dropped %d, want 10", d)
	}
}

// listen registers a listener that passes each event to the returned channel.
func listen(t *testing.T, b *Local, ctx context.Context, ref string) <-chan Event {
	t.Helper()
	ch := make(chan Event, 100)
	if err := b.Listen(ctx, ref, func(ev Event) { ch <- ev }); err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestListenDeliversInOrderToTheSameUserOnly(t *testing.T) {
	b := NewLocal(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	alice := listen(t, b, ctx, "alice")
	bob := listen(t, b, ctx, "bob")
	for _, typ := range []Type{Connected, Disconnected, Reauthenticated} {
		if err := b.Publish(ctx, Event{ReferenceID: "alice", Type: typ}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []Type{Connected, Disconnected, Reauthenticated} {
		select {
		case got := <-alice:
			if got.Type != want {
				t.Fatalf("got %s, want %s: out of order", got.Type, want)
			}
		case <-time.After(time.Second):
			t.Fatalf("alice never got %s", want)
		}
	}
	select {
	case got := <-bob:
		t.Errorf("bob got alice's event %+v", got)
	case <-time.After(50 * time.Millisecond):
	}
}

// An idle listener holds no goroutine: one runs only while its events wait, and deliveries
// to one listener never overlap.
func TestListenHoldsNoGoroutineWhileIdle(t *testing.T) {
	b := NewLocal(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := runtime.NumGoroutine()
	var overlaps, delivered atomic.Int32
	for i := range 100 {
		ref := "user-" + strconv.Itoa(i%10)
		var inside atomic.Int32 // this listener's deliveries under way
		if err := b.Listen(ctx, ref, func(Event) {
			if inside.Add(1) > 1 {
				overlaps.Add(1)
			}
			time.Sleep(time.Millisecond)
			inside.Add(-1)
			delivered.Add(1)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines for 100 idle listeners, %d before", n, before)
	}
	for range 3 {
		_ = b.Publish(ctx, Event{ReferenceID: "user-0", Type: Connected})
	}
	if !eventually(2*time.Second, func() bool { return delivered.Load() == 30 }) {
		t.Fatalf("%d deliveries, want 30", delivered.Load())
	}
	if !eventually(2*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
		t.Errorf("%d goroutines after the events were delivered, %d before", runtime.NumGoroutine(), before)
	}
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d overlapping deliveries to one listener", n)
	}
}

func TestListenStopsWhenTheContextEnds(t *testing.T) {
	b := NewLocal(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	ch := listen(t, b, ctx, "alice")
	cancel()
	if !eventually(time.Second, func() bool { return b.Subscribers() == 0 }) {
		t.Fatalf("%d subscribers left", b.Subscribers())
	}
	_ = b.Publish(context.Background(), Event{ReferenceID: "alice", Type: Connected})
	select {
	case ev := <-ch:
		t.Errorf("delivered after cancel: %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

// A listener that does not keep up misses events beyond its buffer; Publish never waits.
func TestListenNeverBlocksPublish(t *testing.T) {
	b := NewLocal(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stuck, release := make(chan struct{}, 1), make(chan struct{})
	if err := b.Listen(ctx, "alice", func(Event) {
		select {
		case stuck <- struct{}{}:
		default:
		}
		<-release
	}); err != nil {
		t.Fatal(err)
	}
	_ = b.Publish(ctx, Event{ReferenceID: "alice", Type: Error})
	<-stuck
	done := make(chan struct{})
	go func() {
		// The first event is in the stuck delivery; a buffer's worth waits behind it.
		for range subscriberBuffer + 10 {
			_ = b.Publish(ctx, Event{ReferenceID: "alice", Type: Error})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Publish blocked on a stuck listener")
	}
	close(release)
	if d := b.Dropped(); d != 10 {
		t.Errorf("dropped %d, want 10", d)
	}
}

func eventually(within time.Duration, ok func() bool) bool {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if ok() {
			return true
		}
	}
	return ok()
}
