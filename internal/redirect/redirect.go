// Package redirect decides which URLs terragate may send a user back to after
// connecting a wearable. Apps name the URLs (successRedirectUrl,
// failureRedirectUrl); an open redirect would let anyone use the gateway to
// bounce users to a phishing page, so only URLs under prefixes the operator
// listed are accepted.
//
// Matching is done on parsed URLs, never on strings: the scheme and host must
// equal an entry's, the port must equal after defaults, and the entry's path
// must be a prefix of the candidate's on a segment boundary. Candidates that
// parsers tend to disagree about (backslashes, credentials, encoded slashes,
// dot segments, control characters, non-ASCII) are refused outright.
package redirect

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// MaxURLLen bounds a candidate URL in bytes. Longer URLs are refused rather
// than parsed; browsers and proxies truncate them inconsistently.
const MaxURLLen = 2048

// ErrNotAllowed is the kind of every error [Allowlist.Check] returns. Its
// messages say why a URL was refused, are safe to show to the client, and
// never reveal the allowlist.
var ErrNotAllowed = errors.New("redirect URL is not allowed")

// refusal is a reason a candidate was refused.
type refusal string

func (r refusal) Error() string        { return "redirect URL " + string(r) }
func (r refusal) Is(target error) bool { return target == ErrNotAllowed }

const (
	errNotListed   refusal = "is not in the allowed list"
	errEmpty       refusal = "is empty"
	errTooLong     refusal = "is too long"
	errCharacters  refusal = "contains forbidden characters"
	errMalformed   refusal = "is malformed"
	errNotAbsolute refusal = "must be absolute"
	errScheme      refusal = "scheme is not allowed"
	errUserinfo    refusal = "must not contain credentials"
	errHost        refusal = "host is invalid"
	errPath        refusal = "path must not contain dot segments, empty segments or encoded slashes"
)

// forbiddenSchemes run code or read local content when navigated to, so they
// are refused even when an operator lists them.
var forbiddenSchemes = map[string]bool{
	"javascript": true,
	"data":       true,
	"file":       true,
	"vbscript":   true,
	"blob":       true,
}

// defaultPorts lets "https://a.com" and "https://a.com:443" compare equal.
var defaultPorts = map[string]string{"http": "80", "https": "443"}

// Allowlist is a set of URL prefixes that redirect URLs must fall under. The
// zero value and nil admit nothing. It is safe for concurrent use.
type Allowlist struct {
	entries []entry
}

// entry is one parsed allowlist prefix.
type entry struct {
	raw    string
	scheme string // lower case
	host   string // lower case, without brackets or port; empty for some custom schemes
	port   string // with the scheme's default applied
	path   string // decoded; empty admits any path
	// anyHost is set for a bare custom scheme such as "myapp://": the scheme
	// belongs to the app, and the "host" of its deep links is just a route.
	anyHost bool
}

// Parse builds an Allowlist from a comma-separated list of URL prefixes, as
// in ALLOWED_REDIRECT_URLS. Spaces around entries are trimmed and empty
// entries skipped. Each entry must be an absolute URL; http and https entries
// need a host; custom schemes ("myapp://", "myapp://connected",
// "com.example.app:/oauth") are accepted. A bare custom scheme admits every
// URL of that scheme. Entries with credentials, a query or a fragment, and
// scripting schemes, are refused with an error naming the entry.
func Parse(list string) (*Allowlist, error) {
	a := &Allowlist{}
	for raw := range strings.SplitSeq(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		e, err := parseEntry(raw)
		if err != nil {
			return nil, fmt.Errorf("redirect: allowed URL %q: %w", raw, err)
		}
		a.entries = append(a.entries, e)
	}
	return a, nil
}

// FromOrigins builds an Allowlist from CORS origins, as in
// CORS_ALLOWED_ORIGINS: each origin admits any path on that scheme, host and
// port. A wildcard origin is refused: "any site" is no redirect policy.
func FromOrigins(origins []string) (*Allowlist, error) {
	a := &Allowlist{}
	for _, raw := range origins {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		if strings.Contains(raw, "*") {
			return nil, fmt.Errorf("redirect: origin %q: wildcards cannot serve as redirect targets", raw)
		}
		e, err := parseEntry(raw)
		if err == nil && e.host == "" {
			err = errors.New("an origin needs a host")
		}
		if err == nil && e.path != "" && e.path != "/" {
			err = errors.New("an origin has no path")
		}
		if err != nil {
			return nil, fmt.Errorf("redirect: origin %q: %w", raw, err)
		}
		e.path = ""
		a.entries = append(a.entries, e)
	}
	return a, nil
}

func parseEntry(raw string) (entry, error) {
	u, err := parseStrict(raw)
	if err != nil {
		return entry{}, err
	}
	if u.RawQuery != "" || u.ForceQuery {
		return entry{}, errors.New("must not contain a query")
	}
	if strings.Contains(raw, "#") {
		return entry{}, errors.New("must not contain a fragment")
	}
	e := entry{raw: raw, scheme: u.Scheme, port: u.Port(), path: u.Path}
	e.host, _ = normalHost(u)
	if p, ok := defaultPorts[e.scheme]; ok {
		if e.port == "" {
			e.port = p
		}
		// An empty path and "/" are the same resource on the web.
		if e.path == "" {
			e.path = "/"
		}
	}
	e.anyHost = defaultPorts[e.scheme] == "" && u.Host == "" && e.path == ""
	return e, nil
}

// parseStrict parses raw and applies every check that does not depend on the
// allowlist. Entries and candidates go through it alike.
func parseStrict(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errEmpty
	}
	if len(raw) > MaxURLLen {
		return nil, errTooLong
	}
	for i := 0; i < len(raw); i++ {
		// Browsers silently drop tabs and newlines and rewrite backslashes
		// to slashes; non-ASCII invites look-alike hosts. None of these
		// belong in a redirect URL, so they are refused rather than
		// interpreted.
		if c := raw[i]; c <= ' ' || c == '\\' || c >= 0x7f {
			return nil, errCharacters
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errMalformed
	}
	if forbiddenSchemes[u.Scheme] {
		return nil, errScheme
	}
	if u.Scheme == "" || u.Opaque != "" {
		// "//evil.net" is scheme-relative and "https:evil.net" opaque:
		// both are read differently by different clients.
		return nil, errNotAbsolute
	}
	if u.User != nil {
		return nil, errUserinfo
	}
	host, ok := normalHost(u)
	if !ok {
		return nil, errHost
	}
	if _, web := defaultPorts[u.Scheme]; web && host == "" {
		return nil, errNotAbsolute
	}
	if !cleanPath(u) {
		return nil, errPath
	}
	return u, nil
}

// normalHost returns u's host in lower case without brackets or port, and
// whether it is acceptable: plain letters, digits, dots, hyphens and
// underscores with no empty labels (so no trailing dot), or an IPv6 literal
// without a zone.
func normalHost(u *url.URL) (string, bool) {
	host := strings.ToLower(u.Hostname())
	if strings.HasPrefix(u.Host, "[") {
		addr, err := netip.ParseAddr(host)
		return host, err == nil && addr.Is6() && addr.Zone() == ""
	}
	if host == "" {
		// An authority with only a port ("myapp://:80") names nothing.
		return host, u.Host == ""
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" {
			return host, false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return host, false
			}
		}
	}
	return host, true
}

// cleanPath reports whether u's path can be compared segment by segment: no
// encoded slashes or backslashes (which would make decoded segments
// ambiguous), no "." or ".." segments (which could climb out of a prefix
// once a browser resolves them), no empty segments ("//evil.net" read as a
// host by some redirectors), and no control characters once decoded.
func cleanPath(u *url.URL) bool {
	escaped := strings.ToLower(u.EscapedPath())
	if strings.Contains(escaped, "%2f") || strings.Contains(escaped, "%5c") {
		return false
	}
	p := u.Path
	if p == "" || p == "/" {
		return true
	}
	if !strings.HasPrefix(p, "/") {
		return false
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	if strings.Contains(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < ' ' || c == 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// Allows reports whether raw may be used as a redirect URL.
func (a *Allowlist) Allows(raw string) bool {
	return a.Check(raw) == nil
}

// Check returns nil when raw may be used as a redirect URL, and otherwise an
// [ErrNotAllowed] error saying why. Query strings and fragments on raw are
// the app's own and are not examined.
func (a *Allowlist) Check(raw string) error {
	u, err := parseStrict(raw)
	if err != nil {
		return err
	}
	host, _ := normalHost(u)
	port, path := u.Port(), u.Path
	if p, ok := defaultPorts[u.Scheme]; ok {
		if port == "" {
			port = p
		}
		if path == "" {
			path = "/"
		}
	}
	if a != nil {
		for _, e := range a.entries {
			if e.admits(u.Scheme, host, port, path) {
				return nil
			}
		}
	}
	return errNotListed
}

func (e entry) admits(scheme, host, port, path string) bool {
	if scheme != e.scheme {
		return false
	}
	if e.anyHost {
		return true
	}
	if host != e.host || port != e.port {
		return false
	}
	switch {
	case e.path == "":
		return true
	case strings.HasSuffix(e.path, "/"):
		return strings.HasPrefix(path, e.path)
	default:
		return path == e.path || strings.HasPrefix(path, e.path+"/")
	}
}

// Len returns the number of entries.
func (a *Allowlist) Len() int {
	if a == nil {
		return 0
	}
	return len(a.entries)
}

// String lists the entries as given, comma-separated, for start-up logs.
func (a *Allowlist) String() string {
	if a == nil {
		return ""
	}
	raws := make([]string, len(a.entries))
	for i, e := range a.entries {
		raws[i] = e.raw
	}
	return strings.Join(raws, ", ")
}
