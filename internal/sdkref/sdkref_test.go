package sdkref_test

import (
	"strings"
	"testing"

	"github.com/terragate/terragate/internal/sdkref"
)

func TestReferences(t *testing.T) {
	k := sdkref.New([]byte("key one"))
	alice := k.For("alice")
	if !strings.HasPrefix(alice, "alice~") || len(alice) != len("alice~")+sdkref.TagLen {
		t.Fatalf("reference %q", alice)
	}
	if again := k.For("alice"); again != alice {
		t.Errorf("not stable: %q then %q", alice, again)
	}
	if id, ok := k.Verify(alice); !ok || id != "alice" {
		t.Errorf("Verify(%q) = %q, %v", alice, id, ok)
	}
	bob := k.For("bob")
	_, bobTag, _ := sdkref.Split(bob)
	flipped := []byte(alice)
	flipped[len(flipped)-1] ^= 1
	for _, ref := range []string{
		"alice",                      // plain id
		"",                           // none
		"alice~",                     // no tag
		"bob" + alice[len("alice"):], // alice's tag on another id
		"alice~" + bobTag,            // another user's tag
		string(flipped),              // altered tag
		alice + "x",                  // longer
		"~" + alice[len("alice~"):],  // empty id
		sdkref.New([]byte("other key")).For("alice"), // another server's key
	} {
		if id, ok := k.Verify(ref); ok {
			t.Errorf("Verify(%q) = %q, want refused", ref, id)
		}
	}
	// Ids holding the separator split at the last one.
	odd := k.For("a~b@example.com")
	if id, ok := k.Verify(odd); !ok || id != "a~b@example.com" {
		t.Errorf("Verify(%q) = %q, %v", odd, id, ok)
	}
	// Rotation: the new key issues, the old still verifies while listed.
	rotated := sdkref.New([]byte("key two"), []byte("key one"))
	if id, ok := rotated.Verify(alice); !ok || id != "alice" {
		t.Errorf("old reference after rotation: %q, %v", id, ok)
	}
	if rotated.For("alice") == alice {
		t.Error("the new key issues the old reference")
	}
	var none *sdkref.Keys
	if _, ok := none.Verify(alice); ok {
		t.Error("nil keys verify")
	}
}
