// Package clientip decides which address a request comes from, for rate limits, logs and
// allow lists. Behind a load balancer the connection comes from the balancer, and the
// client's address is in X-Forwarded-For; but anyone can send that header, so it is only
// believed as far as it was written by proxies the operator trusts (TRUSTED_PROXIES).
package clientip

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver finds a request's client address. The zero value and a nil *Resolver trust no
// proxy, so they always answer with the connection's address.
type Resolver struct {
	trusted prefixes
	text    string
}

// Parse reads TRUSTED_PROXIES: comma-separated IPv4 and IPv6 addresses and CIDR blocks
// of the proxies in front of terragate. An empty string trusts none.
func Parse(trustedProxies string) (*Resolver, error) {
	p, err := parsePrefixes(trustedProxies)
	if err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	return &Resolver{trusted: p, text: strings.TrimSpace(trustedProxies)}, nil
}

// ClientIP is the address of the client that made r. It is the connection's peer unless
// that peer is a trusted proxy; then X-Forwarded-For is read from the right (each proxy
// appends the address it saw), skipping trusted proxies, and the first address left is
// the client. Entries to the left of it were written by the client and are ignored, so
// prepending a made-up address changes nothing. When the chain is malformed, or holds
// only trusted proxies, the answer is the last trusted hop: the most distant address
// known to be true. The result is invalid only when the connection's own address cannot
// be read.
func (res *Resolver) ClientIP(r *http.Request) netip.Addr {
	peer := remoteAddr(r.RemoteAddr)
	if res == nil || !res.trusted.contains(peer) {
		return peer
	}
	hop := peer
	// Several X-Forwarded-For lines form one list, in order (RFC 9110, section 5.3).
	values := r.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		entries := strings.Split(values[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			a, ok := parseForwarded(entries[j])
			if !ok {
				return hop
			}
			if !res.trusted.contains(a) {
				return a
			}
			hop = a
		}
	}
	return hop
}

// remoteAddr reads http.Request.RemoteAddr ("ip:port", or a bare ip from some servers and
// tests).
func remoteAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalize(ap.Addr())
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return normalize(a)
	}
	return netip.Addr{}
}

// parseForwarded reads one X-Forwarded-For entry. Some proxies add a port, and IPv6 then
// comes in brackets; anything else is malformed.
func parseForwarded(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return normalize(a), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalize(ap.Addr()), true
	}
	if inner, ok := strings.CutPrefix(s, "["); ok {
		if inner, ok := strings.CutSuffix(inner, "]"); ok {
			if a, err := netip.ParseAddr(inner); err == nil && a.Is6() {
				return normalize(a), true
			}
		}
	}
	return netip.Addr{}, false
}

// normalize makes one client one address: an IPv4 client seen through an IPv6 socket
// (::ffff:192.0.2.1) is 192.0.2.1, and a zone names an interface, not a client.
func normalize(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// AllowList admits requests from some address blocks only, such as Terra's webhook
// senders (WEBHOOK_ALLOWED_IPS). An empty list admits everyone.
type AllowList struct {
	allowed prefixes
	text    string
}

// ParseAllowList reads comma-separated CIDR blocks (bare addresses also work, as blocks of
// one).
func ParseAllowList(s string) (*AllowList, error) {
	p, err := parsePrefixes(s)
	if err != nil {
		return nil, fmt.Errorf("allowed addresses: %w", err)
	}
	return &AllowList{allowed: p, text: strings.TrimSpace(s)}, nil
}

// Allows reports whether a may be served. An invalid address is only allowed by an empty
// list: a request whose source is unknown cannot be shown to be in a block.
func (l *AllowList) Allows(a netip.Addr) bool {
	if l == nil || len(l.allowed) == 0 {
		return true
	}
	return l.allowed.contains(normalize(a))
}

// Middleware answers 403 Forbidden, with a JSON body, to clients the allow list does not
// admit, as resolver identifies them.
func Middleware(resolver *Resolver, allow *AllowList, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allow.Allows(resolver.ClientIP(r)) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "client address not allowed"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// prefixes is a short list of address blocks; a linear scan beats anything cleverer at
// the sizes operators configure.
type prefixes []netip.Prefix

func parsePrefixes(s string) (prefixes, error) {
	var out prefixes
	for field := range strings.SplitSeq(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		p, err := parsePrefix(field)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR block", s)
		}
		a = normalize(a)
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR block", s)
	}
	// Addresses are compared unmapped, so an IPv4-mapped block becomes the IPv4 block it
	// describes; otherwise it would silently match nothing.
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%q mixes IPv4-mapped and other IPv6 addresses", s)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	// Host bits are cleared, as a router would: 10.1.2.3/8 means 10.0.0.0/8.
	return p.Masked(), nil
}

func (ps prefixes) contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// String is the setting the resolver was parsed from, for start-up logs.
func (res *Resolver) String() string {
	if res == nil {
		return ""
	}
	return res.text
}

// String is the setting the list was parsed from, for start-up logs.
func (l *AllowList) String() string {
	if l == nil {
		return ""
	}
	return l.text
}
