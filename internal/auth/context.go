package auth

import (
	"context"
	"strings"
)

type userKey struct{}

type actorKey struct{}

type errorKey struct{}

// WithUser returns a copy of ctx that carries user as the caller.
func WithUser(ctx context.Context, user User) context.Context {
	return context.WithValue(ctx, userKey{}, user)
}

// ForContext returns the caller stored by [WithUser], if any: an end user, a
// service, or an end user a service acts for (see [ActAs]).
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

// Caller returns whoever is calling, end user or service, or an
// [ErrUnauthenticated] error explaining why nobody is. It is for code that
// serves both kinds alike; most code wants [Require] or [RequireService].
func Caller(ctx context.Context) (User, error) {
	if user, ok := ForContext(ctx); ok {
		return user, nil
	}
	if err := ErrorForContext(ctx); err != nil {
		return User{}, err
	}
	return User{}, unauthenticated("missing bearer token")
}

// Require returns the end user the request is for, or an error: wrapping
// [ErrUnauthenticated] when nobody is signed in, and [ErrForbidden] for a
// service caller that has not chosen a user with [ActAs]. It is what a
// resolver that works on one user's data calls; refusing bare services keeps
// their calls from landing on a made-up user named after the service.
func Require(ctx context.Context) (User, error) {
	user, err := Caller(ctx)
	if err != nil {
		return User{}, err
	}
	if user.Service {
		return User{}, forbidden("a service must act for a user")
	}
	return user, nil
}

// RequireService returns the service caller, or an error: wrapping
// [ErrUnauthenticated] when nobody is signed in, and [ErrForbidden] for an
// end user, including one a service acts for.
func RequireService(ctx context.Context) (User, error) {
	user, err := Caller(ctx)
	if err != nil {
		return User{}, err
	}
	if !user.Service {
		return User{}, forbidden("service credentials required")
	}
	return user, nil
}

// ActAs returns a copy of ctx in which a service caller acts for the end
// user userID (the app's reference ID for that user): [Require] then returns
// that user, with [User.Actor] set to the service's ID, and [Actor] returns
// the service for audit. It fails with [ErrForbidden] unless the caller is a
// service (an end user, or a service already acting, may not switch users),
// or when userID could not name an end user; and with [ErrUnauthenticated]
// when nobody is signed in.
func ActAs(ctx context.Context, userID string) (context.Context, error) {
	service, err := RequireService(ctx)
	if err != nil {
		return ctx, err
	}
	// Checked as strictly as a token's subject, but not trimmed: the service
	// must name the user exactly.
	if userID != strings.TrimSpace(userID) || checkUserID(userID) != "" {
		return ctx, forbidden("cannot act for an invalid user ID")
	}
	ctx = context.WithValue(ctx, actorKey{}, service)
	return WithUser(ctx, User{ID: userID, Actor: service.ID}), nil
}

// Actor returns the service acting for the current end user through
// [ActAs], if any. Audit records use it to tell "the user did this" from
// "a backend did this for the user".
func Actor(ctx context.Context) (User, bool) {
	service, ok := ctx.Value(actorKey{}).(User)
	// Only while the acted-for user is still the caller: a later WithUser
	// replaces the caller, and the actor must not outlive it.
	if user, _ := ForContext(ctx); !ok || user.Service || user.Actor != service.ID {
		return User{}, false
	}
	return service, true
}
