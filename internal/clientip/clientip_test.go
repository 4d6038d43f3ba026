package clientip

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "", want: nil},
		{in: " , ", want: nil},
		{in: "10.0.0.1", want: []string{"10.0.0.1/32"}},
		{in: "10.0.0.0/8, 2001:db8::/32 ,::1", want: []string{"10.0.0.0/8", "2001:db8::/32", "::1/128"}},
		{in: "10.1.2.3/8", want: []string{"10.0.0.0/8"}},
		{in: "::ffff:10.0.0.1", want: []string{"10.0.0.1/32"}},
		{in: "::ffff:10.0.0.0/104", want: []string{"10.0.0.0/8"}},
		{in: "::ffff:10.0.0.0/64", wantErr: true},
		{in: "10.0.0.0/33", wantErr: true},
		{in: "example.com", wantErr: true},
		{in: "10.0.0.1,nope", wantErr: true},
		{in: "fe80::1%eth0", wantErr: true},
		{in: "10.0.0.1:80", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			res, err := Parse(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Parse(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			var got []string
			for _, p := range res.trusted {
				got = append(got, p.String())
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Parse(%q) = %v, want %v", tt.in, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("Parse(%q) = %v, want %v", tt.in, got, tt.want)
				}
			}
		})
	}
}

func TestClientIP(t *testing.T) {
	const proxies = "10.0.0.0/8, 2001:db8:ffff::/48"
	tests := []struct {
		name    string
		trusted string // default proxies; "-" for none
		remote  string
		xff     []string // one header line each
		want    string
	}{
		{name: "direct client", remote: "203.0.113.7:5555", want: "203.0.113.7"},
		{name: "XFF from an untrusted peer is ignored", remote: "203.0.113.7:5555", xff: []string{"198.51.100.1"}, want: "203.0.113.7"},
		{name: "no trusted proxies configured", trusted: "-", remote: "10.0.0.1:5555", xff: []string{"198.51.100.1"}, want: "10.0.0.1"},
		{name: "one trusted proxy", remote: "10.0.0.1:5555", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "trusted proxy without XFF", remote: "10.0.0.1:5555", want: "10.0.0.1"},
		{name: "empty XFF", remote: "10.0.0.1:5555", xff: []string{""}, want: "10.0.0.1"},
		{name: "chain of trusted proxies", remote: "10.0.0.1:5555", xff: []string{"198.51.100.1, 10.0.0.9, 10.0.0.8"}, want: "198.51.100.1"},
		{name: "prepended spoof is ignored", remote: "10.0.0.1:5555", xff: []string{"1.1.1.1, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "spoofed trusted address left of the client", remote: "10.0.0.1:5555", xff: []string{"10.0.0.5, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "garbage left of the client is never reached", remote: "10.0.0.1:5555", xff: []string{"<script>, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "garbage where the client should be", remote: "10.0.0.1:5555", xff: []string{"198.51.100.1, garbage, 10.0.0.9"}, want: "10.0.0.9"},
		{name: "garbage at the right end", remote: "10.0.0.1:5555", xff: []string{"198.51.100.1, nonsense"}, want: "10.0.0.1"},
		{name: "empty entry stops the walk", remote: "10.0.0.1:5555", xff: []string{"198.51.100.1,,"}, want: "10.0.0.1"},
		{name: "unknown token", remote: "10.0.0.1:5555", xff: []string{"unknown"}, want: "10.0.0.1"},
		{name: "several XFF lines are one list", remote: "10.0.0.1:5555", xff: []string{"1.1.1.1", "198.51.100.1, 10.0.0.9", "10.0.0.8"}, want: "198.51.100.1"},
		{name: "spoof in an earlier XFF line", remote: "10.0.0.1:5555", xff: []string{"1.1.1.1", "198.51.100.1"}, want: "198.51.100.1"},
		{name: "only trusted hops", remote: "10.0.0.1:5555", xff: []string{"10.0.0.3, 10.0.0.2"}, want: "10.0.0.3"},
		{name: "IPv6 client", remote: "10.0.0.1:5555", xff: []string{"2001:db8:1::7"}, want: "2001:db8:1::7"},
		{name: "IPv6 proxy", remote: "[2001:db8:ffff::1]:443", xff: []string{"198.51.100.1, 2001:db8:ffff::2"}, want: "198.51.100.1"},
		{name: "IPv6 direct", remote: "[2001:db8:1::7]:443", xff: []string{"198.51.100.1"}, want: "2001:db8:1::7"},
		{name: "IPv6 zone dropped", remote: "[fe80::1%eth0]:443", want: "fe80::1"},
		{name: "IPv4-mapped proxy is trusted", remote: "[::ffff:10.0.0.1]:5555", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "IPv4-mapped client is IPv4", remote: "10.0.0.1:5555", xff: []string{"::ffff:198.51.100.1"}, want: "198.51.100.1"},
		{name: "IPv4-mapped spoof of a trusted hop is still trusted, not a bypass", remote: "10.0.0.1:5555", xff: []string{"198.51.100.1, ::ffff:10.0.0.9"}, want: "198.51.100.1"},
		{name: "entries with ports", remote: "10.0.0.1:5555", xff: []string{"198.51.100.1:1234, [2001:db8:ffff::2]:80"}, want: "198.51.100.1"},
		{name: "bracketed IPv6 without port", remote: "10.0.0.1:5555", xff: []string{"[2001:db8:1::7]"}, want: "2001:db8:1::7"},
		{name: "bracketed IPv4 is malformed", remote: "10.0.0.1:5555", xff: []string{"[198.51.100.1]"}, want: "10.0.0.1"},
		{name: "remote without port", remote: "203.0.113.7", want: "203.0.113.7"},
		{name: "unreadable remote", remote: "pipe", xff: []string{"198.51.100.1"}, want: "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trusted := proxies
			if tt.trusted == "-" {
				trusted = ""
			}
			res, err := Parse(trusted)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := res.ClientIP(r).String(); got != tt.want {
				t.Fatalf("ClientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestNilResolver(t *testing.T) {
	var res *Resolver
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.1:1"
	r.Header.Set("X-Forwarded-For", "198.51.100.1")
	if got := res.ClientIP(r); got != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("nil resolver: %s", got)
	}
}

func TestAllowList(t *testing.T) {
	tests := []struct {
		list string
		addr string
		want bool
	}{
		{list: "", addr: "198.51.100.1", want: true},
		{list: "", addr: "", want: true},
		{list: "192.0.2.0/24", addr: "192.0.2.200", want: true},
		{list: "192.0.2.0/24", addr: "192.0.3.1", want: false},
		{list: "192.0.2.0/24", addr: "::ffff:192.0.2.1", want: true},
		{list: "192.0.2.0/24", addr: "", want: false},
		{list: "192.0.2.0/24, 2001:db8::/32", addr: "2001:db8:5::1", want: true},
		{list: "192.0.2.0/24, 2001:db8::/32", addr: "2001:db9::1", want: false},
		{list: "192.0.2.7", addr: "192.0.2.7", want: true},
		{list: "192.0.2.7", addr: "192.0.2.8", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.list+" "+tt.addr, func(t *testing.T) {
			l, err := ParseAllowList(tt.list)
			if err != nil {
				t.Fatal(err)
			}
			var a netip.Addr
			if tt.addr != "" {
				a = netip.MustParseAddr(tt.addr)
			}
			if got := l.Allows(a); got != tt.want {
				t.Fatalf("Allows(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
	if _, err := ParseAllowList("192.0.2.0/24, terra.co"); err == nil {
		t.Fatal("ParseAllowList accepted a host name")
	}
}

func TestMiddleware(t *testing.T) {
	res, err := Parse("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	allow, err := ParseAllowList("192.0.2.0/24")
	if err != nil {
		t.Fatal(err)
	}
	h := Middleware(res, allow, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hook accepted")
	}))
	tests := []struct {
		name, remote, xff string
		want              int
	}{
		{name: "allowed directly", remote: "192.0.2.5:1", want: 200},
		{name: "allowed through a proxy", remote: "10.0.0.1:1", xff: "192.0.2.5", want: 200},
		{name: "refused directly", remote: "198.51.100.1:1", want: 403},
		{name: "refused through a proxy", remote: "10.0.0.1:1", xff: "198.51.100.1", want: 403},
		{name: "spoofed XFF from outside", remote: "198.51.100.1:1", xff: "192.0.2.5", want: 403},
		{name: "spoof prepended through a proxy", remote: "10.0.0.1:1", xff: "192.0.2.5, 198.51.100.1", want: 403},
		{name: "the proxy itself is not an allowed sender", remote: "10.0.0.1:1", want: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/webhooks/terra", nil)
			r.RemoteAddr = tt.remote
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			if tt.want != 403 {
				return
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] == "" {
				t.Fatalf("body %q is not a JSON error (%v)", w.Body, err)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}
}
