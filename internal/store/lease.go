package store

import (
	"fmt"
	"time"
)

// CheckLease validates a lease request before an engine stores it. A lease that ends at or
// before now would be expired the moment it is taken.
func CheckLease(name, holder string, now, until time.Time) error {
	switch {
	case name == "":
		return fmt.Errorf("lease: empty name: %w", ErrInvalid)
	case holder == "":
		return fmt.Errorf("lease %q: empty holder: %w", name, ErrInvalid)
	case now.IsZero() || !until.After(now):
		return fmt.Errorf("lease %q: until %v is not after now %v: %w", name, until, now, ErrInvalid)
	}
	return nil
}
