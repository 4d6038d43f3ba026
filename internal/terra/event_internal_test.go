package terra

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

// decodeEventTwoPass is DecodeEvent as it was before it decoded small bodies whole first:
// the head, then, for a connection event, the whole body. FuzzDecodeEventOnePass holds
// DecodeEvent to it.
func decodeEventTwoPass(body []byte) (Event, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Event{}, fmt.Errorf("%w: not a JSON object", ErrInvalidEvent)
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
		ev := Event{Type: *head.Type}
		var status string
		if len(head.Status) > 0 && string(head.Status) != "null" && json.Unmarshal(head.Status, &status) == nil {
			ev.Status = &status
		}
		return ev, nil
	}
	var w struct {
		Event
		ScopesAdded   json.RawMessage `json:"scopes_added"`
		ScopesRemoved json.RawMessage `json:"scopes_removed"`
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return Event{}, fmt.Errorf("%w: %s: %v", ErrInvalidEvent, *head.Type, jsonProblem(err))
	}
	ev := w.Event
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

// FuzzDecodeEventOnePass: decoding a small body whole first gives the same event, or the
// same error text (which the webhook handler answers with), as decoding its head first, and
// so does a body too large to be decoded whole first.
func FuzzDecodeEventOnePass(f *testing.F) {
	for _, s := range []string{
		`{"type":"auth","status":"success","user":{"user_id":"u1","provider":"OURA","reference_id":"r","active":true,"scopes":"a,b","created_at":"2022-12-12T10:00:00.000000+00:00","last_webhook_update":null},"reference_id":"r","widget_session_id":null}`,
		`{"type":"auth","Type":null,"user":{"user_id":"u1","provider":"OURA"}}`,
		`{"TYPE":"deauth","user":{"user_id":"u1"},"type":"deauth"}`,
		`{"type":"deauth","user":"u1"}`,
		`{"type":"deauth","status":7,"user":{"user_id":"u1"}}`,
		`{"type":"activity","status":7,"user":"not an object"}`,
		`{"type":"permission_change","user":{"user_id":"u"},"scopes_added":["a,b"," "],"scopes_removed":5}`,
		`{"type":"user_reauth","new_user":{"user_id":"u2","provider":"OURA"},"old_user":{"user_id":"u1"}}`,
		`{"type":"auth"`,
		`{"type":7}`,
		`{"status":"success"}`,
		` {"type":"healthcheck"} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, b := range [][]byte{body, append(bytes.Repeat([]byte(" "), wholeFirst), body...)} {
			got, gotErr := DecodeEvent(b)
			want, wantErr := decodeEventTwoPass(b)
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
				t.Fatalf("%d bytes: DecodeEvent = %+v, %v; decoding the head first = %+v, %v", len(b), got, gotErr, want, wantErr)
			}
		}
	})
}
