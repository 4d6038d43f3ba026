package relay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/relay"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestParseDestinations(t *testing.T) {
	ds, err := relay.ParseDestinations(`[
		{"name":"backend","url":"https://api.example.com/terra","events":["activity","sleep"],"secret":"` + secret + `"},
		{"name":"all-1","url":"http://127.0.0.1:9/x","secret":"` + secret + `"},
		{"name":"star","url":"http://127.0.0.1:9/y","events":["*"],"secret":"` + secret + `","concurrency":64}]`)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 || ds[0].Name != "backend" || ds[0].URL.String() != "https://api.example.com/terra" {
		t.Fatalf("destinations = %+v", ds)
	}
	for _, tc := range []struct {
		d    int
		typ  string
		want bool
	}{{0, "activity", true}, {0, "sleep", true}, {0, "auth", false}, {0, "daily", false},
		{1, "auth", true}, {1, "hormone", true}, {1, "some_new_type", true}, {2, "deauth", true}} {
		if got := ds[tc.d].Wants(tc.typ); got != tc.want {
			t.Errorf("%s.Wants(%q) = %v; want %v", ds[tc.d].Name, tc.typ, got, tc.want)
		}
	}
	if ds[0].Concurrency != 0 || ds[2].Concurrency != 64 {
		t.Errorf("concurrency = %d, %d; want 0 (the relay's default) and 64", ds[0].Concurrency, ds[2].Concurrency)
	}
	if n := relay.MaxInFlight(ds); n != 64 {
		t.Errorf("MaxInFlight = %d; want 64", n)
	}
	if ds[1].Events != nil || ds[2].Events != nil {
		t.Errorf("every type: Events = %v, %v; want nil", ds[1].Events, ds[2].Events)
	}
}

func TestParseDestinationsRefused(t *testing.T) {
	item := func(name, url, events, secret string) string {
		s := `{"name":"` + name + `","url":"` + url + `","secret":"` + secret + `"`
		if events != "" {
			s += `,"events":` + events
		}
		return s + "}"
	}
	ok := item("a", "https://x.example/h", "", secret)
	for name, tc := range map[string]struct {
		in   string
		want []string // what the message must name
	}{
		"not json":         {`{`, []string{"JSON array"}},
		"empty name":       {"[" + item("", "https://x.example", "", secret) + "]", []string{"destination 1", "name"}},
		"bad name":         {"[" + item("Back_End", "https://x.example", "", secret) + "]", []string{`"Back_End"`, "name"}},
		"long name":        {"[" + item(strings.Repeat("a", 33), "https://x.example", "", secret) + "]", []string{"name"}},
		"duplicate name":   {"[" + ok + "," + ok + "]", []string{`"a"`, "name", "unique"}},
		"relative url":     {"[" + item("a", "/hook", "", secret) + "]", []string{`"a"`, "url"}},
		"ftp url":          {"[" + item("a", "ftp://x.example/h", "", secret) + "]", []string{`"a"`, "url"}},
		"url credentials":  {"[" + item("a", "https://u:p@x.example/h", "", secret) + "]", []string{`"a"`, "url"}},
		"unknown event":    {"[" + item("a", "https://x.example", `["activities"]`, secret) + "]", []string{`"a"`, "events", "activities"}},
		"star and more":    {"[" + item("a", "https://x.example", `["*","sleep"]`, secret) + "]", []string{`"a"`, "events"}},
		"empty events":     {"[" + item("a", "https://x.example", `[]`, secret) + "]", []string{`"a"`, "events"}},
		"no prefix":        {"[" + item("a", "https://x.example", "", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") + "]", []string{`"a"`, "secret"}},
		"short secret":     {"[" + item("a", "https://x.example", "", "whsec_QUFBQQ==") + "]", []string{`"a"`, "secret"}},
		"no concurrency":   {`[{"name":"a","url":"https://x.example","secret":"` + secret + `","concurrency":0}]`, []string{`"a"`, "concurrency"}},
		"huge concurrency": {`[{"name":"a","url":"https://x.example","secret":"` + secret + `","concurrency":1000}]`, []string{`"a"`, "concurrency", "256"}},
		"unknown field":    {`[{"name":"a","url":"https://x.example","secret":"` + secret + `","event":["sleep"]}]`, []string{"event"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := relay.ParseDestinations(tc.in)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "MfKQ9r8G") || strings.Contains(err.Error(), "QUFBQQ") {
				t.Errorf("error %q repeats the secret", err)
			}
		})
	}
}

func TestParseSchedule(t *testing.T) {
	got, err := relay.ParseSchedule("5s,5m,30m,2h,5h,10h,10h")
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}
	if len(got) != len(want) {
		t.Fatalf("schedule = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("schedule[%d] = %v; want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", "5s,,5m", "5s,-1m", "soon", "0s"} {
		if _, err := relay.ParseSchedule(bad); err == nil {
			t.Errorf("ParseSchedule(%q) accepted", bad)
		}
	}
}
