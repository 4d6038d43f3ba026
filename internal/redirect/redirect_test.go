package redirect

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

const testList = "https://app.example.com/, https://web.example.com/app," +
	" https://docs.example.com/guide/, http://localhost:3000," +
	" http://[::1]:3000/cb, https://ports.example.com:8443/x," +
	" myapp://, otherapp://connected, com.example.app:/oauth"

func mustParse(t testing.TB, list string) *Allowlist {
	t.Helper()
	a, err := Parse(list)
	if err != nil {
		t.Fatalf("Parse(%q): %v", list, err)
	}
	return a
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		list    string
		wantLen int
		wantErr string // substring; empty means success
	}{
		{name: "empty", list: "", wantLen: 0},
		{name: "only commas and spaces", list: " , ,, ", wantLen: 0},
		{name: "full list", list: testList, wantLen: 9},
		{name: "custom scheme with path", list: "myapp://connected/done", wantLen: 1},
		{name: "reverse domain scheme", list: "com.example.app:/oauth", wantLen: 1},
		{name: "relative", list: "/callback", wantErr: `"/callback"`},
		{name: "scheme relative", list: "//app.example.com/", wantErr: `"//app.example.com/"`},
		{name: "no scheme", list: "app.example.com", wantErr: `"app.example.com"`},
		{name: "https without host", list: "https:///cb", wantErr: `"https:///cb"`},
		{name: "opaque", list: "https:app.example.com", wantErr: `"https:app.example.com"`},
		{name: "userinfo", list: "https://user:pw@app.example.com/", wantErr: "credentials"},
		{name: "query", list: "https://app.example.com/?a=1", wantErr: "query"},
		{name: "empty query", list: "https://app.example.com/?", wantErr: "query"},
		{name: "fragment", list: "https://app.example.com/#x", wantErr: "fragment"},
		{name: "empty fragment", list: "https://app.example.com/#", wantErr: "fragment"},
		{name: "javascript", list: "javascript://app.example.com/", wantErr: "scheme"},
		{name: "data", list: "data:text/html,x", wantErr: "scheme"},
		{name: "file", list: "file:///etc/", wantErr: "scheme"},
		{name: "trailing dot host", list: "https://app.example.com./", wantErr: "host"},
		{name: "dot segments", list: "https://app.example.com/a/../b", wantErr: "dot segments"},
		{name: "bad entry among good", list: "https://ok.example.com, ftp://x y", wantErr: `"ftp://x y"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Parse(tt.list)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if a.Len() != tt.wantLen {
				t.Fatalf("Len = %d, want %d", a.Len(), tt.wantLen)
			}
		})
	}
}

func TestString(t *testing.T) {
	a := mustParse(t, " https://a.example.com/x ,, myapp:// ")
	if got, want := a.String(), "https://a.example.com/x, myapp://"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	var nilList *Allowlist
	if nilList.Len() != 0 || nilList.String() != "" || nilList.Allows("https://a.example.com/x") {
		t.Fatal("a nil Allowlist must be empty and admit nothing")
	}
}

func TestAllows(t *testing.T) {
	a := mustParse(t, testList)
	long := "https://app.example.com/" + strings.Repeat("a", MaxURLLen)

	tests := []struct {
		url  string
		want bool
		why  string // expected refusal text; empty for "not in the allowed list"
	}{
		// Admitted.
		{url: "https://app.example.com/", want: true},
		{url: "https://app.example.com", want: true},
		{url: "https://app.example.com/connected?status=ok#top", want: true},
		{url: "https://app.example.com:443/done", want: true},
		{url: "https://APP.Example.COM/done", want: true},
		{url: "HTTPS://app.example.com/done", want: true},
		{url: "https://app.example.com/a%20b", want: true},
		{url: "https://app.example.com/caf%C3%A9", want: true},
		{url: "https://app.example.com/?next=https://evil.net/", want: true},
		{url: "https://app.example.com/#@evil.net", want: true},
		{url: "https://web.example.com/app", want: true},
		{url: "https://web.example.com/app/", want: true},
		{url: "https://web.example.com/app/done?x=1", want: true},
		{url: "https://web.example.com:443/app", want: true},
		{url: "https://docs.example.com/guide/", want: true},
		{url: "https://docs.example.com/guide/intro", want: true},
		{url: "http://localhost:3000", want: true},
		{url: "http://localhost:3000/anything/at/all", want: true},
		{url: "http://LOCALHOST:3000/cb", want: true},
		{url: "http://[::1]:3000/cb", want: true},
		{url: "http://[::1]:3000/cb/x?y=1", want: true},
		{url: "https://ports.example.com:8443/x", want: true},
		{url: "myapp://connected?x=1", want: true},
		{url: "myapp://", want: true},
		{url: "myapp://oauth/callback#done", want: true},
		{url: "MYAPP://connected", want: true},
		{url: "otherapp://connected", want: true},
		{url: "otherapp://connected?x=1", want: true},
		{url: "otherapp://Connected/step/2", want: true},
		{url: "com.example.app:/oauth", want: true},
		{url: "com.example.app:/oauth/done?code=1", want: true},

		// Not under any prefix.
		{url: "https://app.example.com.evil.net/"},
		{url: "https://evil.net/https://app.example.com/", why: "empty segments"},
		{url: "https://evil.net/app.example.com/"},
		{url: "https://evil.net/?https://app.example.com/"},
		{url: "http://app.example.com/"},
		{url: "https://app.example.com:8443/"},
		{url: "https://app.example.com:80/"},
		{url: "https://sub.app.example.com/"},
		{url: "https://example.com/"},
		{url: "https://web.example.com/application"},
		{url: "https://web.example.com/ap"},
		{url: "https://web.example.com/APP"},
		{url: "https://web.example.com/"},
		{url: "https://docs.example.com/guide"},
		{url: "https://docs.example.com/guidebook"},
		{url: "http://localhost/"},
		{url: "http://localhost:3001/"},
		{url: "https://localhost:3000/"},
		{url: "http://127.0.0.1:3000/"},
		{url: "http://[::1]:3000/cbx"},
		{url: "http://[::2]:3000/cb"},
		{url: "http://[::1]/cb"},
		{url: "https://ports.example.com/x"},
		{url: "https://ports.example.com:443/x"},
		{url: "otherapp://evil"},
		{url: "otherapp:///connected"},
		{url: "otherapp2://connected"},
		{url: "com.example.app:/oauthx"},
		{url: "com.example.app:/"},
		{url: "com.example.app://evil.net/oauth"},
		{url: "https://xn--pple-43d.example.com/"},

		// Refused for their shape.
		{url: "", why: "is empty"},
		{url: long, why: "too long"},
		{url: "/connected", why: "absolute"},
		{url: "//evil.net", why: "absolute"},
		{url: "//app.example.com/", why: "absolute"},
		{url: "app.example.com/", why: "absolute"},
		{url: "https:app.example.com", why: "absolute"},
		{url: "https:///app.example.com", why: "absolute"},
		{url: "https://app.example.com@evil.net/", why: "credentials"},
		{url: "https://user:pw@app.example.com/", why: "credentials"},
		{url: "https://@app.example.com/", why: "credentials"},
		{url: "https://app.example.com\\@evil.net/", why: "characters"},
		{url: "https:\\\\evil.net", why: "characters"},
		{url: "https://app.example.com/\\evil.net", why: "characters"},
		{url: "https://app.example.com/a b", why: "characters"},
		{url: " https://app.example.com/", why: "characters"},
		{url: "https://app.example.com/\ttab", why: "characters"},
		{url: "https://app.example.com/\n", why: "characters"},
		{url: "https://app.example.com/\x00", why: "characters"},
		{url: "https://app.example.com/\x7f", why: "characters"},
		{url: "java\tscript:alert(1)", why: "characters"},
		{url: "https://аpp.example.com/", why: "characters"},         // Cyrillic a
		{url: "https://app.example.com／evil.net", why: "characters"}, // full-width slash
		{url: "https://app.example.com/\u202eevil", why: "characters"},
		{url: "https://app.example.com%40evil.net/", why: "malformed"},
		{url: "https://app.example.com%2eevil.net/", why: "malformed"},
		{url: "https://app.example.com./", why: "host"},
		{url: "https://app..example.com/", why: "host"},
		{url: "https://.app.example.com/", why: "host"},
		{url: "https://:443/", why: "host"},
		{url: "http://[fe80::1%25eth0]:3000/cb", why: "host"},
		{url: "http://[127.0.0.1]:3000/cb", why: "malformed"},
		{url: "http://[::ffff:127.0.0.1]:3000/cb"},
		{url: "javascript:alert(1)", why: "scheme"},
		{url: "data:text/html;base64,PHNjcmlwdD4=", why: "scheme"},
		{url: "javascript://app.example.com/%0Aalert(1)", why: "scheme"},
		{url: "JavaScript://app.example.com/", why: "scheme"},
		{url: "data://app.example.com/", why: "scheme"},
		{url: "file:///etc/passwd", why: "scheme"},
		{url: "vbscript://app.example.com/", why: "scheme"},
		{url: "https://web.example.com/app/../admin", why: "dot segments"},
		{url: "https://web.example.com/app/..", why: "dot segments"},
		{url: "https://web.example.com/app/./x", why: "dot segments"},
		{url: "https://web.example.com/app/%2e%2e/admin", why: "dot segments"},
		{url: "https://web.example.com/app/%2E%2E/admin", why: "dot segments"},
		{url: "https://web.example.com/app/.%2e/admin", why: "dot segments"},
		{url: "https://web.example.com/app%2f..%2fadmin", why: "encoded slashes"},
		{url: "https://web.example.com/app%2F", why: "encoded slashes"},
		{url: "https://web.example.com/app/%5c", why: "encoded slashes"},
		{url: "https://web.example.com/app/%5C", why: "encoded slashes"},
		{url: "https://app.example.com//evil.net", why: "empty segments"},
		{url: "https://web.example.com/app//x", why: "empty segments"},
		{url: "https://app.example.com/%00", why: "dot segments"},
		{url: "https://app.example.com/%0d%0aSet-Cookie:x", why: "dot segments"},
		{url: "https://app.example.com/%zz", why: "malformed"},
		{url: "https://app.example.com:https/", why: "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			if got := a.Allows(tt.url); got != tt.want {
				t.Fatalf("Allows(%q) = %v, want %v", tt.url, got, tt.want)
			}
			err := a.Check(tt.url)
			if tt.want {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("Check err = %v, want ErrNotAllowed", err)
			}
			why := tt.why
			if why == "" {
				why = "is not in the allowed list"
			}
			if !strings.Contains(err.Error(), why) {
				t.Fatalf("Check err = %q, want one containing %q", err, why)
			}
			for _, e := range a.entries {
				if strings.Contains(err.Error(), e.raw) {
					t.Fatalf("Check err = %q reveals entry %q", err, e.raw)
				}
			}
		})
	}
}

func TestPathBoundaries(t *testing.T) {
	tests := []struct {
		entry string
		url   string
		want  bool
	}{
		{"https://a.example.com", "https://a.example.com/anything", true},
		{"https://a.example.com", "https://a.example.com", true},
		{"https://a.example.com/", "https://a.example.com", true},
		{"https://a.example.com:443", "https://a.example.com/x", true},
		{"https://a.example.com", "https://a.example.com:443/x", true},
		{"http://a.example.com", "http://a.example.com:80/x", true},
		{"http://a.example.com:8080", "http://a.example.com/x", false},
		{"https://a.example.com/app", "https://a.example.com/app", true},
		{"https://a.example.com/app", "https://a.example.com/app/", true},
		{"https://a.example.com/app", "https://a.example.com/app/done", true},
		{"https://a.example.com/app", "https://a.example.com/application", false},
		{"https://a.example.com/app", "https://a.example.com/app.evil", false},
		{"https://a.example.com/app", "https://a.example.com/app?x=1", true},
		{"https://a.example.com/app/", "https://a.example.com/app/x/y", true},
		{"https://a.example.com/app/", "https://a.example.com/app/", true},
		{"https://a.example.com/app/", "https://a.example.com/app", false},
		{"https://a.example.com/a%20b", "https://a.example.com/a%20b/c", true},
		{"https://a.example.com/a%20b", "https://a.example.com/a b/c", false},
		{"myapp://host/deep", "myapp://host/deep/link", true},
		{"myapp://host/deep", "myapp://host/deeper", false},
		{"myapp://host/deep", "myapp://other/deep", false},
		{"myapp://host:9/deep", "myapp://host/deep", false},
		{"myapp:", "myapp://anything/at/all", true},
	}
	for _, tt := range tests {
		t.Run(tt.entry+" "+tt.url, func(t *testing.T) {
			if got := mustParse(t, tt.entry).Allows(tt.url); got != tt.want {
				t.Fatalf("Allows = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFromOrigins(t *testing.T) {
	a, err := FromOrigins([]string{"https://app.example.com", " http://localhost:5173 ", "", "https://web.example.com/"})
	if err != nil {
		t.Fatalf("FromOrigins: %v", err)
	}
	if a.Len() != 3 {
		t.Fatalf("Len = %d, want 3", a.Len())
	}
	for _, u := range []string{
		"https://app.example.com/",
		"https://app.example.com/connected?ok=1",
		"https://app.example.com:443/x",
		"http://localhost:5173/cb",
		"https://web.example.com/any/path",
	} {
		if !a.Allows(u) {
			t.Errorf("Allows(%q) = false, want true", u)
		}
	}
	for _, u := range []string{
		"http://app.example.com/",
		"https://app.example.com:8443/",
		"http://localhost:5174/cb",
		"https://app.example.com.evil.net/",
	} {
		if a.Allows(u) {
			t.Errorf("Allows(%q) = true, want false", u)
		}
	}

	for _, bad := range [][]string{
		{"*"},
		{"https://*.example.com"},
		{"null"},
		{"myapp://"},
		{"https://app.example.com/path"},
		{"https://app.example.com?x=1"},
		{"https://user@app.example.com"},
	} {
		if _, err := FromOrigins(bad); err == nil {
			t.Errorf("FromOrigins(%q) succeeded, want an error", bad)
		} else if !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("FromOrigins(%q) error %q does not name the origin", bad, err)
		}
	}
}

func FuzzAllows(f *testing.F) {
	a := mustParse(f, testList)
	for _, s := range []string{
		"https://app.example.com/", "https://web.example.com/app/x?y=1#z",
		"http://[::1]:3000/cb", "myapp://connected?x=1", "com.example.app:/oauth/x",
		"https://app.example.com.evil.net/", "//evil.net", "https://app.example.com@evil.net/",
		"https://web.example.com/app/../admin", "https://web.example.com/app%2f..",
		"otherapp://connected/x", "HTTPS://APP.EXAMPLE.COM:443/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		err := a.Check(raw)
		if (err == nil) != a.Allows(raw) {
			t.Fatalf("Check and Allows disagree on %q", raw)
		}
		if err != nil {
			if !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("Check(%q) = %v, not ErrNotAllowed", raw, err)
			}
			return
		}
		u, perr := url.Parse(raw)
		if perr != nil || u.Scheme == "" || u.Opaque != "" || u.User != nil {
			t.Fatalf("admitted %q does not parse as an absolute URL without credentials", raw)
		}
		for _, e := range a.entries {
			if strings.EqualFold(u.Scheme, e.scheme) &&
				(e.anyHost || strings.EqualFold(u.Hostname(), e.host)) {
				return
			}
		}
		t.Fatalf("admitted %q matches no entry's scheme and host", raw)
	})
}
