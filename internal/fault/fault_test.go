package fault

import (
	"errors"
	"fmt"
	"testing"
)

type wrapped struct{ err error }

func (w wrapped) Error() string { return "outer: " + w.err.Error() }
func (w wrapped) Unwrap() error { return w.err }

func TestKindOf(t *testing.T) {
	notFound := New(NotFound, "not found")
	tests := []struct {
		name string
		err  error
		want Kind
	}{
		{"nil", nil, Internal},
		{"plain", errors.New("boom"), Internal},
		{"sentinel", notFound, NotFound},
		{"wrapped by fmt", fmt.Errorf("user u1: %w", notFound), NotFound},
		{"wrapped by a type", wrapped{notFound}, NotFound},
		{"the outermost kind wins", fmt.Errorf("%w: %w", New(Conflict, "c"), notFound), Conflict},
	}
	for _, tt := range tests {
		if got := KindOf(tt.err); got != tt.want {
			t.Errorf("%s: KindOf = %v, want %v", tt.name, got, tt.want)
		}
	}
	if !errors.Is(fmt.Errorf("x: %w", notFound), notFound) || errors.Is(New(NotFound, "not found"), notFound) {
		t.Error("a sentinel must be found by identity, not by text")
	}
}
