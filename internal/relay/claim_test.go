package relay

import "testing"

func TestClaimNow(t *testing.T) {
	for _, c := range []struct {
		free, inFlight, slots int
		want                  bool
	}{
		{free: 0, inFlight: 16, slots: 16, want: false},
		{free: 16, inFlight: 0, slots: 16, want: true},
		{free: 1, inFlight: 15, slots: 16, want: false}, // one attempt ended: wait for more
		{free: 3, inFlight: 13, slots: 16, want: false},
		{free: 4, inFlight: 12, slots: 16, want: true}, // a quarter free
		{free: 1, inFlight: 0, slots: 16, want: true},  // half-open: one trial, nothing in flight
		{free: 1, inFlight: 2, slots: 3, want: true},   // small pools claim each slot
		{free: 1, inFlight: 0, slots: 1, want: true},
	} {
		if got := claimNow(c.free, c.inFlight, c.slots); got != c.want {
			t.Errorf("claimNow(free %d, in flight %d, slots %d) = %v, want %v", c.free, c.inFlight, c.slots, got, c.want)
		}
	}
}
