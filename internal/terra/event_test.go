package terra_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/terra"
)

// Realistic payloads, shaped after Terra's event schemas; they also seed FuzzDecodeEvent.
var eventSamples = map[string]string{
	"auth success":       `{"type":"auth","status":"success","user":{"user_id":"4a1b4a4e-1c7f-4c2e-9a0b-2f1e5c3d7a10","provider":"OURA","reference_id":"end-user-1","active":true,"scopes":"activity:read,sleep:read","created_at":"2022-12-12T10:00:00.000000+00:00","last_webhook_update":null},"reference_id":"end-user-1","widget_session_id":"23dc2540-7139-44c6-8158-f81196e2cf2e","message":"User has successfully authenticated","version":"2022-03-16"}`,
	"auth error legacy":  `{"type":"auth","status":"error","user":{"user_id":"","provider":"GARMIN"},"provider":"GARMIN","reason":"provider_error","reference_id":"end-user-1","widget_session_id":"23dc2540-7139-44c6-8158-f81196e2cf2e"}`,
	"auth cancelled":     `{"type":"auth_cancelled","status":"error","reason":"user_cancelled","reference_id":null,"flow_id":"23dc2540-7139-44c6-8158-f81196e2cf2e"}`,
	"deauth":             `{"type":"deauth","status":"success","user":{"user_id":"u1","provider":"FITBIT","reference_id":null,"active":false,"scopes":null,"created_at":null,"last_webhook_update":null},"message":"User has deauthenticated"}`,
	"user reauth":        `{"type":"user_reauth","status":"warning","new_user":{"user_id":"u2","provider":"OURA"},"old_user":{"user_id":"u1","provider":"OURA"},"message":"User has reauthenticated","version":"2022-03-16"}`,
	"user reauth no old": `{"type":"user_reauth","status":"warning","new_user":{"user_id":"u2","provider":"OURA"},"old_user":null,"message":"User has reauthenticated"}`,
	"access revoked":     `{"type":"access_revoked","status":"warning","user":{"user_id":"u1","provider":"WITHINGS"},"message":"User has revoked access"}`,
	"connection error":   `{"type":"connection_error","status":"warning","user":{"user_id":"u1","provider":"POLAR"},"message":"token rejected"}`,
	"permission change":  `{"type":"permission_change","status":"warning","user":{"user_id":"u1","provider":"OURA","scopes":"activity:read,heart:read"},"message":"changed","version":"2022-03-16","scopes_added":"heart:read","scopes_removed":"sleep:read"}`,
	"permission list":    `{"type":"permission_change","status":"warning","user":{"user_id":"u1","provider":"OURA"},"scopes_added":["heart:read"," body:read "],"scopes_removed":[]}`,
	"activity":           `{"type":"activity","user":{"user_id":"u1","provider":"GARMIN"},"data":[{"metadata":{"start_time":"2022-12-12T10:00:00+00:00"}}],"version":"2022-03-16"}`,
	"healthcheck":        `{"type":"healthcheck","status":"success","creation_timestamp":"2022-12-12T10:00:00Z","trend_percentage":0.1}`,
	"odd status":         `{"type":"processing","status":17}`,
}

func TestDecodeEvent(t *testing.T) {
	cases := []struct {
		sample string
		check  func(t *testing.T, ev terra.Event)
	}{
		{"auth success", func(t *testing.T, ev terra.Event) {
			if ev.User == nil || ev.User.Provider != "OURA" || *ev.WidgetSessionID == "" || *ev.ReferenceID != "end-user-1" {
				t.Errorf("%+v", ev)
			}
		}},
		{"auth error legacy", func(t *testing.T, ev terra.Event) {
			if *ev.Status != "error" || *ev.Reason != "provider_error" {
				t.Errorf("%+v", ev)
			}
		}},
		{"auth cancelled", func(t *testing.T, ev terra.Event) {
			if ev.ReferenceID != nil || *ev.FlowID == "" || ev.User != nil {
				t.Errorf("%+v", ev)
			}
		}},
		{"user reauth", func(t *testing.T, ev terra.Event) {
			if ev.NewUser.UserID != "u2" || ev.OldUser.UserID != "u1" {
				t.Errorf("%+v", ev)
			}
		}},
		{"user reauth no old", func(t *testing.T, ev terra.Event) {
			if ev.OldUser != nil {
				t.Errorf("%+v", ev)
			}
		}},
		{"permission change", func(t *testing.T, ev terra.Event) {
			if *ev.ScopesAdded != "heart:read" || *ev.ScopesRemoved != "sleep:read" {
				t.Errorf("%+v", ev)
			}
		}},
		{"permission list", func(t *testing.T, ev terra.Event) {
			if *ev.ScopesAdded != "heart:read,body:read" || *ev.ScopesRemoved != "" {
				t.Errorf("added %q removed %q", *ev.ScopesAdded, *ev.ScopesRemoved)
			}
		}},
		{"activity", func(t *testing.T, ev terra.Event) {
			if ev.Type != "activity" || ev.Status != nil || ev.User != nil {
				t.Errorf("data events decode with type and status only: %+v", ev)
			}
		}},
		{"healthcheck", func(t *testing.T, ev terra.Event) {
			if *ev.Status != "success" {
				t.Errorf("%+v", ev)
			}
		}},
		{"odd status", func(t *testing.T, ev terra.Event) {
			if ev.Status != nil {
				t.Errorf("%+v", ev)
			}
		}},
		{"deauth", func(*testing.T, terra.Event) {}},
		{"access revoked", func(*testing.T, terra.Event) {}},
		{"connection error", func(*testing.T, terra.Event) {}},
	}
	for _, c := range cases {
		t.Run(c.sample, func(t *testing.T) {
			ev, err := terra.DecodeEvent([]byte(eventSamples[c.sample]))
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, ev)
		})
	}
}

func TestDecodeEventRejects(t *testing.T) {
	cases := map[string]string{
		"empty":                    ``,
		"array":                    `[{"type":"auth"}]`,
		"string":                   `"auth"`,
		"malformed":                `{"type":"auth"`,
		"trailing data":            `{"type":"deauth","user":{"user_id":"u"}} {}`,
		"no type":                  `{"status":"success"}`,
		"empty type":               `{"type":""}`,
		"numeric type":             `{"type":7}`,
		"auth success no user":     `{"type":"auth","status":"success"}`,
		"auth success no user id":  `{"type":"auth","status":"success","user":{"user_id":"","provider":"OURA"}}`,
		"auth success no provider": `{"type":"auth","status":"success","user":{"user_id":"u"}}`,
		"deauth no user":           `{"type":"deauth","status":"success"}`,
		"access revoked null user": `{"type":"access_revoked","user":null}`,
		"connection error no id":   `{"type":"connection_error","user":{"provider":"OURA"}}`,
		"permission no user":       `{"type":"permission_change","scopes_added":"a"}`,
		"reauth no new user":       `{"type":"user_reauth","old_user":{"user_id":"u","provider":"OURA"}}`,
		"scopes a number":          `{"type":"permission_change","user":{"user_id":"u"},"scopes_added":5}`,
		"scopes list of numbers":   `{"type":"permission_change","user":{"user_id":"u"},"scopes_removed":[1]}`,
		"user wrong type":          `{"type":"deauth","user":"u1"}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := terra.DecodeEvent([]byte(body)); !errors.Is(err, terra.ErrInvalidEvent) {
				t.Errorf("err = %v, want ErrInvalidEvent", err)
			}
		})
	}
}

func TestParseTime(t *testing.T) {
	want := time.Date(2022, 12, 12, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2022-12-12T10:00:00.000000+00:00", want, true},
		{"2022-12-12T12:00:00.000000+02:00", want, true},
		{"2022-12-12T10:00:00Z", want, true},
		{"2022-12-12T10:00:00.5Z", want.Add(500 * time.Millisecond), true},
		{"2022-12-12T10:00:00", want, true},
		{"2022-12-12T10:00:00.123456", want.Add(123456 * time.Microsecond), true},
		{"2022-12-12T11:00:00+0100", want, true},
		{"2022-12-12 10:00:00", want, true},
		{"2022-12-12 10:00:00+00:00", want, true},
		{" 2022-12-12T10:00:00Z ", want, true},
		{"", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		{"2022-13-12T10:00:00Z", time.Time{}, false},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, ok := terra.ParseTime(c.in)
			if ok != c.ok || !got.Equal(c.want) || (ok && got.Location() != time.UTC) {
				t.Errorf("ParseTime(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
			}
		})
	}
	// Terra's own format round-trips.
	s := want.Format(terra.TimeFormat)
	if s != "2022-12-12T10:00:00.000000+00:00" {
		t.Errorf("TimeFormat gives %q", s)
	}
}

func TestSplitScopes(t *testing.T) {
	cases := map[string][]string{
		"":              nil,
		" , ,":          nil,
		"activity:read": {"activity:read"},
		"activity:read, sleep:read ,,daily:read ": {"activity:read", "sleep:read", "daily:read"},
	}
	for in, want := range cases {
		if got := terra.SplitScopes(in); !slices.Equal(got, want) {
			t.Errorf("SplitScopes(%q) = %q, want %q", in, got, want)
		}
	}
}
