package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/store"
)

func testBackfill(t *testing.T, open func(t *testing.T) store.Store) {
	h := func(fn func(t *testing.T, s *suite)) func(t *testing.T) {
		return func(t *testing.T) {
			t.Parallel()
			fn(t, newSuite(t, open(t)))
		}
	}
	t.Run("OncePerConnection", h(testBackfillOnce))
	t.Run("ClaimFinish", h(testBackfillClaimFinish))
	t.Run("ClaimConcurrent", h(testBackfillClaimConcurrent))
}

func plan(types ...string) *store.BackfillPlan {
	return &store.BackfillPlan{Types: types, Since: at(-86400 * 30), Until: at(0)}
}

func withBackfill(d store.Delivery, p *store.BackfillPlan) store.Delivery {
	d.Backfill = p
	return d
}

// An auth that connects a Terra user for the first time records its backfill, in the same
// commit; a repeated auth, other events and deliveries without a plan record nothing.
func testBackfillOnce(t *testing.T, s *suite) {
	s.apply(withBackfill(authSuccess("k1", at(1), snap("u1", "alice", "OURA")), plan("activity", "sleep")))
	b, err := s.s.GetBackfill(s.ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.Types, []string{"activity", "sleep"}) || b.Step != 0 || b.Attempts != 0 || b.DoneAt != nil {
		t.Errorf("backfill %+v", b)
	}
	wantTime(t, "Since", b.Since, at(-86400*30))
	wantTime(t, "Until", b.Until, at(0))

	s.apply(withBackfill(authSuccess("k2", at(2), snap("u1", "alice", "OURA")), plan("body")))
	if b, _ := s.s.GetBackfill(s.ctx, "u1"); !slices.Equal(b.Types, []string{"activity", "sleep"}) {
		t.Errorf("a repeated auth changed the backfill: %+v", b)
	}
	s.apply(authSuccess("k3", at(3), snap("u2", "alice", "OURA")))
	s.apply(withBackfill(userEvent(store.EventPermissionChange, "k4", at(4), "u3"), plan("body")))
	for _, id := range []string{"u2", "u3"} {
		if _, err := s.s.GetBackfill(s.ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", id, err)
		}
	}
	// A duplicate delivery records nothing either (it applies nothing).
	s.apply(withBackfill(authSuccess("k1", at(1), snap("u4", "bob", "OURA")), plan("body")))
	if _, err := s.s.GetBackfill(s.ctx, "u4"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("duplicate: %v", err)
	}
}

// A claim leases the backfill; finishing records progress, or that it is done; a claim
// whose lease another replaced cannot finish.
func testBackfillClaimFinish(t *testing.T, s *suite) {
	if _, ok, err := s.s.ClaimBackfill(s.ctx, time.Hour); ok || err != nil {
		t.Fatalf("claim on an empty queue: %v %v", ok, err)
	}
	s.apply(withBackfill(authSuccess("k1", at(1), snap("u1", "alice", "OURA")), plan("daily")))
	b, ok, err := s.s.ClaimBackfill(s.ctx, time.Hour)
	if !ok || err != nil || b.UserID != "u1" || b.Attempts != 1 {
		t.Fatalf("claim = %+v %v %v", b, ok, err)
	}
	if _, ok, _ := s.s.ClaimBackfill(s.ctx, time.Hour); ok {
		t.Error("a leased backfill was claimed again")
	}
	b.Step, b.LastError, b.NextAttemptAt = 1, "terra: 429", time.Now().Add(-time.Second)
	if err := s.s.FinishBackfill(s.ctx, b); err != nil {
		t.Fatal(err)
	}
	b2, ok, err := s.s.ClaimBackfill(s.ctx, time.Hour)
	if !ok || err != nil || b2.Step != 1 || b2.Attempts != 2 || b2.LastError != "terra: 429" {
		t.Fatalf("second claim = %+v %v %v", b2, ok, err)
	}
	if err := s.s.FinishBackfill(s.ctx, b); !errors.Is(err, store.ErrConflict) {
		t.Errorf("finishing a replaced claim: %v, want ErrConflict", err)
	}
	done := time.Now()
	b2.Step, b2.LastError, b2.DoneAt = 2, "", &done
	if err := s.s.FinishBackfill(s.ctx, b2); err != nil {
		t.Fatal(err)
	}
	got, err := s.s.GetBackfill(s.ctx, "u1")
	if err != nil || got.DoneAt == nil || got.Step != 2 {
		t.Errorf("done backfill %+v %v", got, err)
	}
	if _, ok, _ := s.s.ClaimBackfill(s.ctx, 0); ok {
		t.Error("a done backfill was claimed")
	}
}

// Claimers at once never get the same backfill.
func testBackfillClaimConcurrent(t *testing.T, s *suite) {
	const n = 12
	for i := range n {
		id := "u" + string(rune('a'+i))
		s.apply(withBackfill(authSuccess("k"+id, at(i), snap(id, "alice", "OURA")), plan("daily")))
	}
	var mu sync.Mutex
	var got []string
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				b, ok, err := s.s.ClaimBackfill(s.ctx, time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				if !ok {
					return
				}
				mu.Lock()
				got = append(got, b.UserID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(got)
	if len(slices.Compact(slices.Clone(got))) != n || len(got) != n {
		t.Errorf("claimed %v, want each of %d once", got, n)
	}
}
