// Package fault is the one set of error kinds every domain package returns. A package
// defines its sentinels and error types with a Kind; the GraphQL error presenter maps kinds
// to codes, and reads the few details a client can act on through the small interfaces
// here, so it knows no package's types.
package fault

import (
	"errors"
	"time"
)

// Kind is what went wrong, as far as a caller can act on it.
type Kind uint8

// The kinds. Internal is the zero value: an error that says nothing else is a bug or a
// failure the caller cannot help, and is shown as a generic internal error.
const (
	Internal             Kind = iota
	Unauthenticated           // no caller, or a credential that does not verify
	Forbidden                 // a caller that may not do this
	Invalid                   // input the caller can correct
	NotFound                  // nothing the caller may see by that name
	Conflict                  // the record is not in a state that allows this
	RateLimited               // over a budget; Waiter says for how long
	UpstreamError             // Terra answered, and not with a success
	UpstreamUnavailable       // Terra is down, slow or unreachable, or its circuit is open
	TooManySubscriptions      // one connection's subscription budget is spent
	ReplayFailed              // a dead letter that still cannot be applied
)

// Kinded is an error that says its kind.
type Kinded interface {
	error
	Kind() Kind
}

// Fielder is an error about one input field or argument.
type Fielder interface{ FieldName() string }

// Waiter is an error that says how long to wait before trying again.
type Waiter interface{ Wait() time.Duration }

// Upstream is an error that carries what Terra answered: its HTTP status, and its message
// (safe to show, but left out in production).
type Upstream interface {
	UpstreamStatus() int
	UpstreamMessage() string
}

// KindOf is the kind of the first error in err's chain that has one; Internal when none
// has.
func KindOf(err error) Kind {
	var k Kinded
	if errors.As(err, &k) {
		return k.Kind()
	}
	return Internal
}

// New is a sentinel error of kind k, for errors.Is, e.g.
//
//	var ErrNotFound = fault.New(fault.NotFound, "not found")
func New(k Kind, msg string) error { return &sentinel{kind: k, msg: msg} }

type sentinel struct {
	kind Kind
	msg  string
}

func (s *sentinel) Error() string { return s.msg }
func (s *sentinel) Kind() Kind    { return s.kind }
