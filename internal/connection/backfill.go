package connection

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
)

// DefaultBackfillTypes are asked for when a request names none.
var DefaultBackfillTypes = []string{"activity", "sleep", "daily", "body"}

// BackfillRequest asks Terra for a connection's history, delivered through the webhooks.
type BackfillRequest struct {
	// Owner is the end user asking: only their own connections are found. AnyOwner (a
	// service acting for no end user) lifts that.
	Owner    string
	AnyOwner bool
	UserID   string // the connection (Terra user)
	// Since and Until bound the range; a zero Until is now.
	Since, Until time.Time
	// Types are terra.HistoryTypes; none means DefaultBackfillTypes.
	Types []string
}

// check validates the request and fills in its defaults; a refusal is a
// *store.ArgumentError naming the argument.
func (r *BackfillRequest) check(now time.Time) error {
	if r.Until.IsZero() {
		r.Until = now
	}
	if !r.Since.Before(r.Until) {
		return &store.ArgumentError{Arg: "since", Reason: "must be before until"}
	}
	if r.Until.Sub(r.Since) > terra.MaxHistoryDays*24*time.Hour {
		return &store.ArgumentError{Arg: "since", Reason: fmt.Sprintf("the range may span at most %d days", terra.MaxHistoryDays)}
	}
	if len(r.Types) == 0 {
		r.Types = DefaultBackfillTypes
	}
	var types []string
	for _, t := range r.Types {
		if !slices.Contains(terra.HistoryTypes, t) {
			return &store.ArgumentError{Arg: "types", Reason: fmt.Sprintf("%q is not one of %s", t, strings.Join(terra.HistoryTypes, ", "))}
		}
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	r.Types = types
	return nil
}

// RequestBackfill asks Terra for the history of one connection, one request per type, the
// data following as webhooks (to_webhook). Bad input is refused before Terra is asked;
// someone else's connection is ErrNotFound, as an unknown one (or one Terra no longer
// knows) is. by is the caller's audit entry: a connection.backfill_requested entry is
// stored before Terra is asked, so that no request goes unrecorded.
func (s *Service) RequestBackfill(ctx context.Context, r BackfillRequest, by store.AuditEntry) error {
	if err := r.check(s.now().UTC()); err != nil {
		return err
	}
	var u store.TerraUser
	var err error
	if r.AnyOwner {
		u, err = s.store.TerraUser(ctx, r.UserID)
		if err == nil && u.ReplacedBy != "" {
			err = store.ErrNotFound
		}
	} else {
		u, err = s.own(ctx, r.Owner, r.UserID)
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrNotFound
		}
		return err
	}
	entry := by
	entry.Action, entry.Subject, entry.ReferenceID = store.ActionBackfillRequested, u.UserID, u.ReferenceID
	entry.Detail = map[string]string{
		"provider": u.Provider,
		"types":    strings.Join(r.Types, ","),
		"since":    r.Since.UTC().Format(time.RFC3339),
		"until":    r.Until.UTC().Format(time.RFC3339),
	}
	if entry.At.IsZero() {
		entry.At = s.now().UTC()
	}
	if err := s.store.AppendAudit(ctx, entry); err != nil {
		return err
	}
	for _, typ := range r.Types {
		if err := s.terra.RequestHistory(ctx, typ, u.UserID, r.Since, r.Until); err != nil {
			if terra.IsNotFound(err) {
				return ErrNotFound // gone at Terra: as unknown as any other
			}
			return fmt.Errorf("request %s history: %w", typ, err)
		}
	}
	return nil
}
