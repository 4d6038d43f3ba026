package auth

import "context"

type userKey struct{}

type errorKey struct{}

// WithUser returns a copy of ctx that carries user as the caller.
func WithUser(ctx context.Context, user User) context.Context {
	return context.WithValue(ctx, userKey{}, user)
}

// ForContext returns the caller stored by [WithUser], if any.
func ForContext(ctx context.Context) (User, bool) {
	user, ok := ctx.Value(userKey{}).(User)
	return user, ok
}

// WithError returns a copy of ctx that records why the caller could not be
// authenticated, so a later layer can report the reason without verifying
// anything again.
func WithError(ctx context.Context, err error) context.Context {
	return context.WithValue(ctx, errorKey{}, err)
}

// ErrorForContext returns the error stored by [WithError], or nil.
func ErrorForContext(ctx context.Context) error {
	err, _ := ctx.Value(errorKey{}).(error)
	return err
}

// Require returns the caller, or an [ErrUnauthenticated] error explaining why
// there is none. It is what a resolver that needs a signed-in user calls.
func Require(ctx context.Context) (User, error) {
	if user, ok := ForContext(ctx); ok {
		return user, nil
	}
	if err := ErrorForContext(ctx); err != nil {
		return User{}, err
	}
	return User{}, unauthenticated("missing bearer token")
}
