package terra

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInvalidEvent is wrapped by DecodeEvent's errors: the body is not an event terragate
// can act on.
var ErrInvalidEvent = errors.New("terra webhook: invalid event")

// Status values of connection events.
const (
	StatusSuccess = "success"
	StatusError   = "error"
	StatusWarning = "warning"
)

// TimeFormat is how Terra writes timestamps such as created_at.
const TimeFormat = "2006-01-02T15:04:05.000000-07:00"

// wireEvent is Event as it arrives; scopes may be a string or an array of strings. Type is a
// pointer, as in DecodeEvent's head, so that a null type reads as none whatever came before
// it.
type wireEvent struct {
	Event
	Type          *string         `json:"type"`
	ScopesAdded   json.RawMessage `json:"scopes_added"`
	ScopesRemoved json.RawMessage `json:"scopes_removed"`
}

// wholeFirst is the body size up to which DecodeEvent decodes the whole event before it
// knows the type: connection events, nearly all of what terragate acts on, are a few hundred
// bytes and then decode in one pass; larger bodies are data events, which only need the
// type and status.
const wholeFirst = 4 << 10

// DecodeEvent decodes a webhook body that has already passed VerifySignature. It checks
// what a handler needs for the connection events (see the Event* constants); other types
// decode with Type and Status alone, so they can be acknowledged and ignored.
func DecodeEvent(body []byte) (Event, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Event{}, fmt.Errorf("%w: not a JSON object", ErrInvalidEvent)
	}
	// The whole decoding is what the type decides below, done early: the same body into the
	// same type gives the same event or the same error, so the result does not depend on the
	// order, only the cost does.
	var w wireEvent
	var wireErr error
	whole := len(body) <= wholeFirst
	if whole {
		wireErr = json.Unmarshal(body, &w)
		if wireErr == nil && w.Type != nil && isConnectionEvent(*w.Type) {
			return connectionEvent(w)
		}
	}

	var head struct {
		Type   *string         `json:"type"`
		Status json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrInvalidEvent, jsonProblem(err))
	}
	if head.Type == nil || *head.Type == "" {
		return Event{}, fmt.Errorf("%w: no type", ErrInvalidEvent)
	}

	if !isConnectionEvent(*head.Type) {
		// Data and housekeeping events vary; a status that is not a string is dropped
		// rather than refused because nothing acts on it.
		ev := Event{Type: *head.Type}
		var status string
		if len(head.Status) > 0 && string(head.Status) != "null" && json.Unmarshal(head.Status, &status) == nil {
			ev.Status = &status
		}
		return ev, nil
	}

	if !whole {
		wireErr = json.Unmarshal(body, &w)
	}
	if wireErr != nil {
		return Event{}, fmt.Errorf("%w: %s: %v", ErrInvalidEvent, *head.Type, jsonProblem(wireErr))
	}
	return connectionEvent(w)
}

// connectionEvent finishes decoding a connection event: its scopes normalised, and what a
// handler needs of its type checked.
func connectionEvent(w wireEvent) (Event, error) {
	ev := w.Event
	ev.Type = *w.Type
	var err error
	if ev.ScopesAdded, err = decodeScopes(w.ScopesAdded); err != nil {
		return Event{}, fmt.Errorf("%w: scopes_added %v", ErrInvalidEvent, err)
	}
	if ev.ScopesRemoved, err = decodeScopes(w.ScopesRemoved); err != nil {
		return Event{}, fmt.Errorf("%w: scopes_removed %v", ErrInvalidEvent, err)
	}
	if err := validateEvent(&ev); err != nil {
		return Event{}, fmt.Errorf("%w: %s: %v", ErrInvalidEvent, ev.Type, err)
	}
	return ev, nil
}

func isConnectionEvent(t string) bool {
	switch t {
	case EventAuth, EventAuthCancelled, EventDeauth, EventUserReauth,
		EventAccessRevoked, EventConnectionError, EventPermissionChange:
		return true
	}
	return false
}

func validateEvent(ev *Event) error {
	switch ev.Type {
	case EventAuth:
		// Only a successful auth creates a connection; the legacy error form may carry
		// a partial user or none.
		if ev.Status != nil && *ev.Status == StatusSuccess {
			return needUser("user", ev.User, true)
		}
	case EventDeauth, EventAccessRevoked, EventConnectionError, EventPermissionChange:
		return needUser("user", ev.User, false)
	case EventUserReauth:
		return needUser("new_user", ev.NewUser, true)
	}
	return nil
}

func needUser(field string, u *User, withProvider bool) error {
	switch {
	case u == nil:
		return fmt.Errorf("no %s", field)
	case u.UserID == "":
		return fmt.Errorf("%s without user_id", field)
	case withProvider && u.Provider == "":
		return fmt.Errorf("%s without provider", field)
	}
	return nil
}

// decodeScopes accepts Terra's comma-separated string and a JSON array of strings, and
// returns the normalised comma-separated form.
func decodeScopes(raw json.RawMessage) (*string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		s = strings.Join(SplitScopes(s), ",")
		return &s, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("is neither a string nor a list of strings")
	}
	s = strings.Join(SplitScopes(strings.Join(list, ",")), ",")
	return &s, nil
}

// jsonProblem keeps JSON errors short; they may quote attacker-controlled input.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	}
	return "malformed JSON"
}

// SplitScopes splits a comma-separated scope list, trimming spaces and dropping empties.
func SplitScopes(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// timeLayouts are the timestamp forms seen from Terra, most common first. time.Parse
// accepts a fractional second after the seconds even when the layout has none.
var timeLayouts = []string{
	time.RFC3339,
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05Z0700",
	"2006-01-02 15:04:05",
}

// ParseTime parses a Terra timestamp such as "2022-12-12T10:00:00.000000+00:00",
// RFC 3339 with or without fraction or zone, or "2022-12-12 10:00:00". Times without a
// zone are UTC. The result is in UTC.
func ParseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}
