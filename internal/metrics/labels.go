package metrics

import "sync"

// capped admits label values from an open set up to a fixed number of distinct values;
// once full, new values read "other". Values seen before the cap keep their own series, so
// the series that existed stay continuous. Each instance of Metrics has its own.
type capped struct {
	max  int
	mu   sync.RWMutex
	seen map[string]struct{}
}

func newCapped(limit int) *capped {
	return &capped{max: limit, seen: make(map[string]struct{}, limit)}
}

// admit returns v if it is valid and either already known or, with learn set, still fits
// under the cap; otherwise "other". Callers pass learn=false for values from requests that
// were refused before they were understood, so junk cannot take the places of real names.
func (c *capped) admit(v string, valid, learn bool) string {
	if !valid {
		return other
	}
	c.mu.RLock()
	_, known := c.seen[v]
	c.mu.RUnlock()
	if known {
		return v
	}
	if !learn {
		return other
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, known := c.seen[v]; known {
		return v
	}
	if len(c.seen) >= c.max {
		return other
	}
	c.seen[v] = struct{}{}
	return v
}

// hexSecretLen is the length from which a name made only of hex digits is taken for a key
// or a hash (terragate's own generated secrets are hex) rather than a name.
const hexSecretLen = 16

// looksLikeSecret reports whether s is a long run of hex digits with at least one digit: a
// shape of key, hash or id that a naming rule alone would admit.
func looksLikeSecret(s string) bool {
	if len(s) < hexSecretLen {
		return false
	}
	digit := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			digit = true
		case 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return digit
}

// isName reports whether s is a GraphQL name ([A-Za-z_][A-Za-z0-9_]*) of at most limit
// bytes that does not look like a secret. The length limit keeps a long token pasted as an
// operation name out; looksLikeSecret keeps out the hex keys the character rule admits.
func isName(s string, limit int) bool {
	if s == "" || len(s) > limit {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return !looksLikeSecret(s)
}

// isCode reports whether s looks like an error code: upper case letters, digits and
// underscores, starting with a letter, at most 64 bytes (BAD_USER_INPUT, GRAPHQL_PARSE_FAILED).
func isCode(s string) bool { return isUpperName(s, 64) }

// isProvider reports whether s is a provider name as Terra spells them (GARMIN, FITBIT):
// upper case letters, digits and underscores, starting with a letter, at most 40 bytes.
func isProvider(s string) bool { return isUpperName(s, 40) }

func isUpperName(s string, limit int) bool {
	if s == "" || len(s) > limit {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z':
		case ('0' <= c && c <= '9' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return !looksLikeSecret(s)
}
