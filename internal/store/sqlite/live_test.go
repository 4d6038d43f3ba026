package sqlite

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/store"
)

// TestLiveSessionsExact runs random creations, returns, expiries, prunes and reopenings and
// checks, after each, that ReusableWidgetSession with the index answers exactly as the
// database alone does, for every end user, input key and a spread of times.
func TestLiveSessionsExact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "terragate.db")
	d, err := Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	rng := rand.New(rand.NewPCG(1, 2))
	// Around the wall clock: the index prunes by it; and years back, where it must defer to
	// the database.
	bases := []time.Time{time.Now().UTC().Truncate(time.Millisecond), time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
	refs, keys := []string{"alice", "bob", "carol"}, []string{"k1", "k2"}
	var ids []string
	check := func(step string) {
		t.Helper()
		for _, base := range bases {
			for _, ref := range refs {
				for _, key := range keys {
					for m := -3; m <= 21; m += 3 {
						at := base.Add(time.Duration(m) * time.Minute)
						got, gotErr := d.ReusableWidgetSession(t.Context(), ref, key, at)
						want, wantErr := d.coreStore.ReusableWidgetSession(t.Context(), ref, key, at)
						if errors.Is(gotErr, store.ErrNotFound) != errors.Is(wantErr, store.ErrNotFound) || got.ID != want.ID {
							t.Fatalf("after %s: ReusableWidgetSession(%s, %s, %v) = %q, %v; the database says %q, %v",
								step, ref, key, at, got.ID, gotErr, want.ID, wantErr)
						}
					}
				}
			}
		}
	}
	for i := range 150 {
		var step string
		switch op := rng.IntN(10); {
		case op < 5:
			base := bases[rng.IntN(len(bases))]
			s := store.WidgetSession{
				ID: fmt.Sprintf("s%d", i), TerraSessionID: fmt.Sprintf("t%d", i),
				ReferenceID: refs[rng.IntN(len(refs))], InputKey: keys[rng.IntN(len(keys))],
				URL: "https://widget.example/" + fmt.Sprint(i), Providers: []string{"OURA"},
				CreatedAt: base, UpdatedAt: base,
				ExpiresAt: base.Add(time.Duration(rng.IntN(20*60)) * time.Second),
			}
			if err := d.CreateWidgetSession(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, s.ID)
			step = "create " + s.ID
		case op < 7 && len(ids) > 0:
			id := ids[rng.IntN(len(ids))]
			if err := d.ConsumeWidgetReturn(t.Context(), id, time.Now()); err != nil && !errors.Is(err, store.ErrConflict) {
				t.Fatal(err)
			}
			step = "return of " + id
		case op < 8:
			at := bases[rng.IntN(len(bases))].Add(time.Duration(rng.IntN(20)) * time.Minute)
			if _, err := d.ExpireWidgetSessions(t.Context(), at); err != nil {
				t.Fatal(err)
			}
			step = fmt.Sprintf("expiry at %v", at)
		case op < 9:
			d.live.mu.Lock()
			d.live.prune(bases[0].Add(time.Duration(rng.IntN(10)) * time.Minute))
			d.live.mu.Unlock()
			step = "prune"
		default:
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if d, err = Open(t.Context(), path, nil); err != nil {
				t.Fatal(err)
			}
			step = "reopen"
		}
		check(step)
	}
}

// TestLiveSessionsAnswerWithoutRead: a first request of an end user, the common case, is
// answered from the index, and a live session still from the database.
func TestLiveSessionsAnswerWithoutRead(t *testing.T) {
	d := open(t, filepath.Join(t.TempDir(), "terragate.db"))
	now := time.Now().UTC()
	if d.live.mayHave("alice", "k", now) {
		t.Fatal("an empty index may have a session")
	}
	s := store.WidgetSession{ID: "s1", TerraSessionID: "t1", ReferenceID: "alice", InputKey: "k", URL: "https://w/1",
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(15 * time.Minute)}
	if err := d.CreateWidgetSession(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if !d.live.mayHave("alice", "k", now.Add(2*time.Minute)) {
		t.Error("the index does not know of a live session")
	}
	if d.live.mayHave("bob", "k", now.Add(time.Minute)) || d.live.mayHave("alice", "other", now.Add(time.Minute)) || d.live.mayHave("alice", "k", now.Add(15*time.Minute)) {
		t.Error("the index may have a session no one stored")
	}
	if got, err := d.ReusableWidgetSession(t.Context(), "alice", "k", now.Add(2*time.Minute)); err != nil || got.ID != "s1" {
		t.Errorf("ReusableWidgetSession = %q, %v; want s1", got.ID, err)
	}
}
