package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"strings"
)

// ServicePrefix starts the [User.ID] of every service caller ("svc:" then the
// key's name, e.g. "svc:billing-backend"). End-user tokens whose subject
// starts with it, in any letter case, are refused, so a token can never pass
// itself off as a service and a service ID never names an end user.
const ServicePrefix = "svc:"

// MinServiceKeyLen is the shortest service key accepted. Keys are bearer
// credentials compared as they are, with no rate of guessing to lean on, so
// they must be long random strings (32 characters of base64 or hex carry well
// over 128 bits).
const MinServiceKeyLen = 32

// maxServiceNameLen bounds a service key's name, which ends up in IDs and logs.
const maxServiceNameLen = 64

// ServiceKey is the credential of one of the app's own backends.
type ServiceKey struct {
	// Name identifies the backend in [User.ID] and audit logs: 1 to 64
	// letters, digits, '.', '_' or '-'.
	Name string
	// Key is what the backend sends as its bearer token: at least
	// [MinServiceKeyLen] printable ASCII characters without spaces, and not
	// shaped like a JWT (two dots), since such values are verified as tokens.
	Key string
}

// ParseServiceKeys reads a comma-separated list of "name:key" pairs, the
// format of the SERVICE_API_KEYS setting. An entry without a colon is a bare
// key named "service-N", N being its 1-based position in the list; a key that
// itself contains a colon must therefore be given with a name. Surrounding
// spaces and empty entries are ignored. The keys are checked by
// [NewVerifier], not here.
func ParseServiceKeys(s string) []ServiceKey {
	var keys []ServiceKey
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, key, named := strings.Cut(entry, ":")
		if !named {
			name, key = fmt.Sprintf("service-%d", len(keys)+1), entry
		}
		keys = append(keys, ServiceKey{Name: strings.TrimSpace(name), Key: strings.TrimSpace(key)})
	}
	return keys
}

// serviceKeys holds the SHA-256 of each key and its caller's ID. Hashing
// first gives every comparison the same length, so its time says nothing
// about how long a key is or how much of it a guess got right; and the keys
// themselves are not kept, so a memory dump does not hand them out.
type serviceKeys struct {
	hashes [][sha256.Size]byte
	ids    []string
	// known and lengths let redact find keys in text by their hashes: the set of hashes,
	// and each distinct key length, longest first.
	known   map[[sha256.Size]byte]struct{}
	lengths []int
}

func newServiceKeys(keys []ServiceKey) (serviceKeys, error) {
	var s serviceKeys
	names := make(map[string]bool, len(keys))
	hashes := make(map[[sha256.Size]byte]bool, len(keys))
	for i, k := range keys {
		// Errors name the position only: a name may be a mangled key.
		n := i + 1
		if !validServiceName(k.Name) {
			return serviceKeys{}, fmt.Errorf("auth: service key %d: name must be 1 to %d letters, digits, '.', '_' or '-'", n, maxServiceNameLen)
		}
		if names[strings.ToLower(k.Name)] {
			return serviceKeys{}, fmt.Errorf("auth: service key %d: name used twice", n)
		}
		if len(k.Key) < MinServiceKeyLen {
			return serviceKeys{}, fmt.Errorf("auth: service key %d: shorter than %d characters", n, MinServiceKeyLen)
		}
		if len(k.Key) > maxTokenLen {
			return serviceKeys{}, fmt.Errorf("auth: service key %d: too long", n)
		}
		if strings.ContainsFunc(k.Key, func(r rune) bool { return r <= ' ' || r > '~' }) {
			return serviceKeys{}, fmt.Errorf("auth: service key %d: only printable ASCII without spaces is allowed", n)
		}
		if looksLikeJWT(k.Key) {
			return serviceKeys{}, fmt.Errorf("auth: service key %d: must not contain exactly two dots, the shape of a JWT", n)
		}
		h := sha256.Sum256([]byte(k.Key))
		if hashes[h] {
			// One key for two names would make the caller ambiguous.
			return serviceKeys{}, fmt.Errorf("auth: service key %d: key used twice", n)
		}
		names[strings.ToLower(k.Name)], hashes[h] = true, true
		s.hashes = append(s.hashes, h)
		s.ids = append(s.ids, ServicePrefix+k.Name)
		if !slices.Contains(s.lengths, len(k.Key)) {
			s.lengths = append(s.lengths, len(k.Key))
		}
	}
	s.known = make(map[[sha256.Size]byte]struct{}, len(s.hashes))
	for _, h := range s.hashes {
		s.known[h] = struct{}{}
	}
	slices.SortFunc(s.lengths, func(a, b int) int { return b - a })
	return s, nil
}

// Redacted is what RedactServiceKeys puts in place of a key.
const Redacted = "[redacted]"

// RedactServiceKeys returns s with every configured service key in it replaced by
// [Redacted], for scrubbing error messages and log lines. The keys are not kept: every
// stretch of s that could be one (printable ASCII without spaces, as keys are, at the length
// of some key) is hashed and looked up among the keys' hashes. That costs a hash per byte of
// such text and key length, which is nothing beside an error's other costs.
func (v *Verifier) RedactServiceKeys(s string) string {
	return v.services.redact(s)
}

func (s serviceKeys) redact(text string) string {
	if len(s.lengths) == 0 || len(text) < s.lengths[len(s.lengths)-1] {
		return text
	}
	var b strings.Builder
	copied, runEnd := 0, 0
	for i := 0; i < len(text); {
		if runEnd <= i {
			// The run of key characters from i: every key found in text lies inside one.
			runEnd = i
			for runEnd < len(text) && keyByte(text[runEnd]) {
				runEnd++
			}
			if runEnd == i {
				i++
				continue
			}
		}
		matched := 0
		for _, n := range s.lengths { // longest first: a key holding a shorter one goes whole
			if i+n > runEnd {
				continue
			}
			if _, ok := s.known[sha256.Sum256([]byte(text[i:i+n]))]; ok {
				matched = n
				break
			}
		}
		if matched == 0 {
			i++
			continue
		}
		b.WriteString(text[copied:i])
		b.WriteString(Redacted)
		i += matched
		copied = i
	}
	if copied == 0 {
		return text
	}
	b.WriteString(text[copied:])
	return b.String()
}

// keyByte reports whether c may be part of a service key: printable ASCII, no space.
func keyByte(c byte) bool { return c > ' ' && c <= '~' }

func (s serviceKeys) configured() bool { return len(s.hashes) > 0 }

// match returns the ID of the key equal to key. It compares against every
// key, and picks the match without branching, so the time taken does not
// reveal which key, if any, matched.
func (s serviceKeys) match(key string) (string, bool) {
	h := sha256.Sum256([]byte(key))
	found, index := 0, 0
	for i := range s.hashes {
		eq := subtle.ConstantTimeCompare(h[:], s.hashes[i][:])
		index = subtle.ConstantTimeSelect(eq, i, index)
		found |= eq
	}
	if found == 0 {
		return "", false
	}
	return s.ids[index], true
}

func (v *Verifier) verifyServiceKey(key string) (User, error) {
	id, ok := v.services.match(key)
	if !ok {
		return User{}, unauthenticated("service key invalid")
	}
	return User{ID: id, Service: true}, nil
}

func validServiceName(name string) bool {
	if name == "" || len(name) > maxServiceNameLen {
		return false
	}
	for _, r := range name {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

func hasServicePrefix(id string) bool {
	return len(id) >= len(ServicePrefix) && strings.EqualFold(id[:len(ServicePrefix)], ServicePrefix)
}
