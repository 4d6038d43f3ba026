// Package sdkref makes and checks the reference_id an app hands to Terra's mobile SDK
// (Terra.instance(devId, referenceId)). With the SDK the device, not terragate, sets the
// reference_id, so a plain end-user id proves nothing: a modified app could name anyone.
// A reference from here is the end user's id (so Terra's dashboard stays readable) plus a
// tag keyed with a secret only the server holds, so that it cannot be made for another end
// user, nor altered into another's, without the key.
package sdkref

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// Separator ends the end user's id in a reference. The tag is base64url, which never holds
// it, so a reference splits at its last Separator even when the id holds one.
const Separator = "~"

// TagLen is the tag's length in characters: 96 bits of HMAC-SHA256, base64url.
const TagLen = 16

// label binds the tag to this one use, so that a tag is never a valid MAC of anything else.
const label = "terragate sdk reference v1\x00"

// Keys issues references with the first key and accepts those of every key, so that a key
// can be rotated without refusing what the previous one issued while it is still listed.
type Keys struct {
	keys [][]byte
}

// New returns Keys that issue with keys[0] and verify with each of keys. Empty keys are
// left out; with none, nothing is issued or verifies.
func New(keys ...[]byte) *Keys {
	k := &Keys{}
	for _, key := range keys {
		if len(key) > 0 {
			k.keys = append(k.keys, key)
		}
	}
	return k
}

// For is the reference of end user userID: "<userID>~<tag>". It is the same on every
// call, so an app may keep it.
func (k *Keys) For(userID string) string {
	if k == nil || len(k.keys) == 0 {
		return ""
	}
	return userID + Separator + tag(k.keys[0], userID)
}

// Verify returns the end user a reference was issued for. ok is false for anything For
// did not make with one of the keys: a plain id, an altered id or tag, another end user's
// tag.
func (k *Keys) Verify(ref string) (userID string, ok bool) {
	id, t, tagged := Split(ref)
	if k == nil || !tagged || id == "" {
		return "", false
	}
	for _, key := range k.keys {
		if hmac.Equal([]byte(t), []byte(tag(key, id))) {
			return id, true
		}
	}
	return "", false
}

// Split cuts a reference at its last Separator into the end user it claims and its tag;
// tagged is false when ref has no tag-shaped ending (then id is ref whole). It checks
// nothing: Verify does.
func Split(ref string) (id, t string, tagged bool) {
	i := strings.LastIndex(ref, Separator)
	if i < 0 || len(ref)-i-len(Separator) != TagLen {
		return ref, "", false
	}
	t = ref[i+len(Separator):]
	for _, c := range t {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return ref, "", false
		}
	}
	return ref[:i], t, true
}

func tag(key []byte, userID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write([]byte(userID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))[:TagLen]
}
