package events

import (
	"context"
	"log/slog"
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
