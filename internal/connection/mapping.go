package connection

// This file is the whole mapping from Terra's terms to the store's: the events Terra's
// webhooks carry, the users its API returns, and a stored webhook body read again for a
// replay.

import (
	"fmt"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/provider"
	"github.com/terragate/terragate/internal/sdkref"
	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/terra"
)

// Mapping says what Terra's events and users mean for the store, and for whom: it holds
// what decides whose a connection is (see attribute).
type Mapping struct {
	refs    *sdkref.Keys
	sdkOnly func(provider string) bool
}

// NewMapping returns the mapping that verifies mobile SDK references with refs. sdkOnly
// says which providers connect only through Terra's mobile SDKs (provider.Catalog's
// SDKOnly); nil means provider.KnownSDKOnly.
func NewMapping(refs *sdkref.Keys, sdkOnly func(provider string) bool) *Mapping {
	if sdkOnly == nil {
		sdkOnly = provider.KnownSDKOnly
	}
	return &Mapping{refs: refs, sdkOnly: sdkOnly}
}

// Why a reference Terra carried names nobody (store.Event.Unattributed, and the audit).
const (
	// reasonNotIssued: a plain end-user id, which any device can claim.
	reasonNotIssued = "reference_not_issued"
	// reasonBadTag: a tagged reference whose tag does not verify: altered, another end
	// user's, or from a key no longer listed.
	reasonBadTag = "reference_tag_invalid"
	// reasonNone: no reference at all.
	reasonNone = "no_reference"
)

// attribute is the end user a reference Terra carried names for a connection to provider.
// A reference terragate issued (sdkref) names its end user, whatever the provider. For a
// provider reached only through the mobile SDK, where the device and not terragate sets
// the reference, anything else names nobody, and refused says why and claimed whom it
// named. For other providers terragate set the reference itself (the widget), and it names
// that end user as it is.
func (m *Mapping) attribute(provider, ref string) (owner, refused, claimed string) {
	if id, ok := m.refs.Verify(ref); ok {
		return id, "", ""
	}
	if !m.sdkOnly(provider) {
		return ref, "", ""
	}
	id, _, tagged := sdkref.Split(ref)
	switch {
	case ref == "":
		return "", reasonNone, ""
	case tagged:
		return "", reasonBadTag, id
	}
	return "", reasonNotIssued, ref
}

// DecodeEvent reads a webhook body Terra signed and says what it means for the store. The
// webhook handler is given it, so that it knows Terra's signatures but not its events.
func (m *Mapping) DecodeEvent(body []byte) (store.Event, error) {
	ev, err := terra.DecodeEvent(body)
	if err != nil {
		return store.Event{}, err
	}
	return m.EventOf(ev), nil
}

// EventOf says what a Terra event means for the store, with each reference it carries
// replaced by the end user it names (attribute).
func (m *Mapping) EventOf(ev terra.Event) store.Event {
	out := store.Event{
		Type:            ev.Type,
		User:            snapshot(ev.User),
		ReferenceID:     deref(ev.ReferenceID),
		WidgetSessionID: deref(ev.WidgetSessionID),
		FlowID:          deref(ev.FlowID),
		Provider:        strings.ToUpper(deref(ev.Provider)),
		Reason:          deref(ev.Reason),
	}
	status := strings.ToLower(deref(ev.Status))
	switch ev.Type {
	case terra.EventAuth:
		if status == "success" && ev.User != nil {
			out.Kind = store.EventAuthSuccess
		} else {
			out.Kind = store.EventAuthFailure
		}
	case terra.EventAuthCancelled:
		out.Kind = store.EventAuthFailure
	case terra.EventDeauth:
		out.Kind = store.EventDeauth
	case terra.EventAccessRevoked:
		out.Kind = store.EventAccessRevoked
	case terra.EventConnectionError:
		out.Kind = store.EventConnectionError
	case terra.EventPermissionChange:
		out.Kind = store.EventPermissionChange
		out.ScopesAdded = terra.SplitScopes(deref(ev.ScopesAdded))
		out.ScopesRemoved = terra.SplitScopes(deref(ev.ScopesRemoved))
	case terra.EventUserReauth:
		out.Kind = store.EventReauth
		out.User = snapshot(ev.NewUser)
		out.OldUser = snapshot(ev.OldUser)
	default:
		out.Kind = store.EventIgnored
	}
	if out.Kind != store.EventIgnored && out.Kind != store.EventAuthFailure && out.User == nil {
		// The decoder requires a user for these; be safe if it ever does not.
		out.Kind = store.EventIgnored
	}
	if out.Provider == "" && out.User != nil {
		out.Provider = out.User.Provider
	}
	if out.ReferenceID == "" && out.User != nil {
		out.ReferenceID = out.User.ReferenceID
	}
	m.attributeEvent(&out)
	return out
}

// attributeEvent replaces every reference of an event by the end user it names. Every one:
// the store fills a row's missing end user from any later event, so a permission_change
// carrying a plain id must not attach a connection stored for nobody. An SDK connection is
// no widget session's outcome, so none is looked for.
func (m *Mapping) attributeEvent(ev *store.Event) {
	if m.sdkOnly(ev.Provider) {
		ev.NoSession = true
	}
	for _, snap := range []*store.UserSnapshot{ev.User, ev.OldUser} {
		if snap != nil {
			snap.ReferenceID, _, _ = m.attribute(firstOf(snap.Provider, ev.Provider), snap.ReferenceID)
		}
	}
	ev.ReferenceID, ev.Unattributed, ev.Claimed = m.attribute(ev.Provider, ev.ReferenceID)
}

// snapshotOf is a Terra user read from Terra's API in the store's terms, its reference
// replaced by the end user it names.
func (m *Mapping) snapshotOf(u terra.User) *store.UserSnapshot {
	snap := terraSnapshot(u)
	snap.ReferenceID, _, _ = m.attribute(snap.Provider, snap.ReferenceID)
	return snap
}

// owner is the end user a Terra user read from Terra's API belongs to ("" for nobody).
func (m *Mapping) owner(u terra.User) string {
	return m.snapshotOf(u).ReferenceID
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

func snapshot(u *terra.User) *store.UserSnapshot {
	if u == nil || u.UserID == "" {
		return nil
	}
	return terraSnapshot(*u)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(*s)
}

// redelivery rebuilds a stored webhook delivery from its raw body, for replaying a dead
// letter with today's decoding and rules.
func (m *Mapping) redelivery(e store.InboxEvent) (store.Delivery, error) {
	if e.Source != store.SourceWebhook {
		return store.Delivery{}, fmt.Errorf("inbox row %d came from %s, not a webhook: %w", e.ID, e.Source, store.ErrInvalid)
	}
	ev, err := terra.DecodeEvent(e.Body)
	if err != nil {
		return store.Delivery{}, fmt.Errorf("inbox row %d: %w", e.ID, err)
	}
	return store.Delivery{
		DedupeKey:  e.DedupeKey,
		TraceID:    e.TraceID,
		Source:     e.Source,
		SignedAt:   e.SignedAt,
		ReceivedAt: e.ReceivedAt,
		Body:       e.Body,
		Event:      m.EventOf(ev),
	}, nil
}

// terraSnapshot is a Terra user in the store's terms.
func terraSnapshot(u terra.User) *store.UserSnapshot {
	snap := &store.UserSnapshot{UserID: u.UserID, Provider: strings.ToUpper(u.Provider), Active: u.Active}
	if u.ReferenceID != nil && *u.ReferenceID != "null" {
		snap.ReferenceID = strings.TrimSpace(*u.ReferenceID)
	}
	if u.Scopes != nil {
		snap.Scopes = terra.SplitScopes(*u.Scopes)
		if snap.Scopes == nil {
			snap.Scopes = []string{}
		}
	}
	snap.CreatedAt = parseTime(u.CreatedAt)
	snap.LastWebhookUpdate = parseTime(u.LastWebhookUpdate)
	return snap
}

func parseTime(s *string) *time.Time {
	if s == nil {
		return nil
	}
	t, ok := terra.ParseTime(*s)
	if !ok {
		return nil
	}
	return &t
}
