package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/stdwebhook"
	"github.com/terragate/terragate/internal/terra"
)

// Destination is one of the app's backends that Terra's events are relayed to
// (RELAY_DESTINATIONS).
type Destination struct {
	Name string   // [a-z0-9-]{1,32}, unique: how deliveries, logs and metrics name it
	URL  *url.URL // absolute http(s), without credentials
	// Events are the Terra event types it gets; nil means every type, connection events and
	// types Terra adds later included.
	Events []string
	Secret stdwebhook.Secret
	// Concurrency is how many attempts to it may be in flight at once (1 to
	// MaxConcurrency; 0: the relay's default).
	Concurrency int
}

// MaxConcurrency bounds a destination's attempts in flight.
const MaxConcurrency = 256

// Wants reports whether the destination gets events of type typ.
func (d Destination) Wants(typ string) bool {
	return d.Events == nil || slices.Contains(d.Events, typ)
}

// LogValue shows the destination without its secret.
func (d Destination) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", d.Name), slog.String("url", d.URL.String()), slog.String("events", d.events()))
}

// String is "name url [events]", without the secret.
func (d Destination) String() string {
	return d.Name + " " + d.URL.String() + " [" + d.events() + "]"
}

func (d Destination) events() string {
	if d.Events == nil {
		return "*"
	}
	return strings.Join(d.Events, ",")
}

var namePattern = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// ParseDestinations reads RELAY_DESTINATIONS, a JSON array of
// {"name","url","events","secret"}. Its errors name the destination and the field, and never
// repeat a secret.
func ParseDestinations(s string) ([]Destination, error) {
	var raw []struct {
		Name        string    `json:"name"`
		URL         string    `json:"url"`
		Events      *[]string `json:"events"`
		Secret      string    `json:"secret"`
		Concurrency *int      `json:"concurrency"`
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		var field string
		if _, f, ok := strings.Cut(err.Error(), "unknown field "); ok {
			field = ": unknown field " + f
		}
		return nil, fmt.Errorf(`want a JSON array of {"name","url","events","secret","concurrency"}%s`, field)
	}
	var out []Destination
	var errs []error
	seen := map[string]bool{}
	for i, r := range raw {
		who := fmt.Sprintf("destination %d", i+1)
		if r.Name != "" {
			who = fmt.Sprintf("destination %q", r.Name)
		}
		fail := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s: %s", who, field, fmt.Sprintf(format, args...)))
		}
		d := Destination{Name: r.Name}
		switch {
		case !namePattern.MatchString(r.Name):
			fail("name", "want 1 to 32 of a-z, 0-9 and -")
		case seen[r.Name]:
			fail("name", "must be unique")
		}
		seen[r.Name] = true
		u, err := url.Parse(r.URL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			fail("url", "want an absolute http(s) URL")
		case u.User != nil:
			fail("url", "credentials in the URL are not allowed (the signature authenticates terragate)")
		default:
			d.URL = u
		}
		if r.Events != nil {
			events, err := parseEvents(*r.Events)
			if err != nil {
				fail("events", "%v", err)
			}
			d.Events = events
		}
		if d.Secret, err = stdwebhook.ParseSecret(r.Secret); err != nil {
			fail("secret", "%v", err)
		}
		if r.Concurrency != nil {
			if *r.Concurrency < 1 || *r.Concurrency > MaxConcurrency {
				fail("concurrency", "want 1 to %d attempts in flight, got %d", MaxConcurrency, *r.Concurrency)
			}
			d.Concurrency = *r.Concurrency
		}
		out = append(out, d)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// parseEvents checks a destination's event types: ["*"] (nil: every type) or types Terra
// sends (terra.EventTypes), so that a typo cannot drop a type silently.
func parseEvents(events []string) ([]string, error) {
	if len(events) == 1 && events[0] == "*" {
		return nil, nil
	}
	if len(events) == 0 {
		return nil, errors.New(`want a list of Terra event types, or ["*"] (or no events) for every type`)
	}
	var out []string
	for _, e := range events {
		switch {
		case e == "*":
			return nil, errors.New(`"*" stands alone: it means every type`)
		case !slices.Contains(terra.EventTypes, e):
			return nil, fmt.Errorf("unknown Terra event type %q; known: %s", e, strings.Join(terra.EventTypes, ", "))
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// ParseSchedule reads RELAY_RETRY_SCHEDULE: comma-separated positive durations, the wait
// before each retry (one attempt, then one more per entry).
func ParseSchedule(s string) ([]time.Duration, error) {
	var out []time.Duration
	for item := range strings.SplitSeq(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(item))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("want comma-separated positive durations such as 5s,5m,30m, got %q", s)
		}
		out = append(out, d)
	}
	return out, nil
}

// Routes names, for each event type, the destinations that want it: the webhook handler's
// router (webhook.Router).
type Routes []Destination

// Route returns the names of the destinations that want events of type typ, in order.
func (rs Routes) Route(typ string) []string {
	var out []string
	for _, d := range rs {
		if d.Wants(typ) {
			out = append(out, d.Name)
		}
	}
	return out
}
