package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/terragate/terragate/internal/store"
)

// The index of live sessions answers most ReusableWidgetSession calls without a read: nearly
// every request for a widget session is the first of its end user and input, and SQLite's
// read of the index that finds nothing cost about as much as inserting the session. It
// holds, for each end user and input key, the latest expiry of the sessions stored CREATED
// with an unused return, and may hold more (sessions since completed, returned or expired,
// and keys that share a hash): an answer from it is only ever "no such session"; when it
// says there may be one, the database decides. It stays exact because this engine's one
// process writes every session (SQLite serves one instance), it learns of each session
// before the session is written, and starts from the database at open. PostgreSQL has no
// such index: there other instances insert sessions too.

// liveSessions is the index: a hash of the end user and input key to the latest expiry (in
// Unix nanoseconds), and how far expiries have been pruned.
type liveSessions struct {
	seed maphash.Seed

	mu     sync.Mutex
	expiry map[uint64]int64
	// pruned is the expiry at or before which entries may have been dropped: a question
	// about an earlier time goes to the database.
	pruned    int64
	nextPrune time.Time
}

// pruneEvery is how often the index drops the entries of sessions that have expired.
const pruneEvery = time.Minute

func newLiveSessions() *liveSessions {
	return &liveSessions{seed: maphash.MakeSeed(), expiry: map[uint64]int64{}, pruned: minStored}
}

// minStored is before any time the store keeps.
var minStored = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

func (l *liveSessions) key(referenceID, inputKey string) uint64 {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(referenceID)
	h.WriteByte(0)
	h.WriteString(inputKey)
	return h.Sum64()
}

// add notes a session that ReusableWidgetSession may hand out until expiresAt.
func (l *liveSessions) add(referenceID, inputKey string, expiresAt time.Time) {
	k, exp := l.key(referenceID, inputKey), store.StoredTime(expiresAt).UnixNano()
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if exp > l.expiry[k] {
		l.expiry[k] = exp
	}
	if now.After(l.nextPrune) {
		l.prune(now)
	}
}

// prune drops the entries of sessions expired by now; l.mu is held.
func (l *liveSessions) prune(now time.Time) {
	cut := now.UnixNano()
	for k, exp := range l.expiry {
		if exp <= cut {
			delete(l.expiry, k)
		}
	}
	l.pruned = max(l.pruned, cut)
	l.nextPrune = now.Add(pruneEvery)
}

// mayHave reports whether the end user may have a session with this input key that expires
// after liveAfter, CREATED with an unused return; false is certain.
func (l *liveSessions) mayHave(referenceID, inputKey string, liveAfter time.Time) bool {
	k, after := l.key(referenceID, inputKey), store.StoredTime(liveAfter).UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	if after < l.pruned {
		return true // what expired between then and the last prune is no longer known
	}
	exp, ok := l.expiry[k]
	return ok && exp > after
}

// loadLiveSessions fills the index with the sessions stored that may still be handed out.
func (d *DB) loadLiveSessions(ctx context.Context) error {
	rows, err := d.rq.ListReusableWidgetSessionKeys(ctx, store.StoredTime(time.Now()))
	if err != nil {
		return fmt.Errorf("sqlite: load live widget sessions: %w", err)
	}
	for _, r := range rows {
		d.live.add(r.ReferenceID, r.InputKey, r.ExpiresAt)
	}
	return nil
}

// ReusableWidgetSession is core's, answered from the index of live sessions when it knows
// there is none.
func (d *DB) ReusableWidgetSession(ctx context.Context, referenceID, inputKey string, liveAfter time.Time) (store.WidgetSession, error) {
	if referenceID != "" && inputKey != "" && !d.live.mayHave(referenceID, inputKey, liveAfter) {
		return store.WidgetSession{}, wrap(ctx, fmt.Sprintf("reusable widget session of %q", referenceID), sql.ErrNoRows)
	}
	return d.coreStore.ReusableWidgetSession(ctx, referenceID, inputKey, liveAfter)
}
