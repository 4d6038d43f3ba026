package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testServiceKey  = "sk_live_3f9a7c1e5b2d4f6a8c0e1b3d5f7a9c2e"
	otherServiceKey = "sk_live_0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
)

var testServices = []ServiceKey{{Name: "billing-backend", Key: testServiceKey}, {Name: "reports", Key: otherServiceKey}}

func TestParseServiceKeys(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []ServiceKey
	}{
		{"empty", "", nil},
		{"blank", "  , ,", nil},
		{"named", "billing:" + testServiceKey, []ServiceKey{{"billing", testServiceKey}}},
		{"bare keys numbered by position", testServiceKey + "," + otherServiceKey, []ServiceKey{{"service-1", testServiceKey}, {"service-2", otherServiceKey}}},
		{"mixed with spaces", " billing : " + testServiceKey + " ,, " + otherServiceKey + " ", []ServiceKey{{"billing", testServiceKey}, {"service-2", otherServiceKey}}},
		{"colon in key", "billing:a:b", []ServiceKey{{"billing", "a:b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseServiceKeys(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseServiceKeys = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNewVerifierServiceKeys(t *testing.T) {
	key32 := strings.Repeat("k", MinServiceKeyLen)
	tests := []struct {
		name string
		keys []ServiceKey
		want string // part of the error; empty means success
	}{
		{name: "ok", keys: testServices},
		{name: "exactly the minimum length", keys: []ServiceKey{{"a", key32}}},
		{name: "too short", keys: []ServiceKey{{"a", key32[1:]}}, want: "shorter than 32"},
		{name: "empty key", keys: []ServiceKey{{"a", ""}}, want: "shorter than 32"},
		{name: "too short after a good one", keys: []ServiceKey{{"a", testServiceKey}, {"b", "short-key"}}, want: "service key 2"},
		{name: "too long", keys: []ServiceKey{{"a", strings.Repeat("k", maxTokenLen+1)}}, want: "too long"},
		{name: "space in key", keys: []ServiceKey{{"a", key32 + " x"}}, want: "printable ASCII"},
		{name: "non-ASCII key", keys: []ServiceKey{{"a", key32 + "é"}}, want: "printable ASCII"},
		{name: "JWT-shaped key", keys: []ServiceKey{{"a", "aaaaaaaaaaaa.bbbbbbbbbbbb.cccccccccccc"}}, want: "shape of a JWT"},
		{name: "dots otherwise allowed", keys: []ServiceKey{{"a", "aaaaaaaaaaaa.bbbbbbbbbbbb.cccc.ccccccc"}}},
		{name: "empty name", keys: []ServiceKey{{"", testServiceKey}}, want: "name must be"},
		{name: "name with colon", keys: []ServiceKey{{"a:b", testServiceKey}}, want: "name must be"},
		{name: "name too long", keys: []ServiceKey{{strings.Repeat("n", 65), testServiceKey}}, want: "name must be"},
		{name: "duplicate name", keys: []ServiceKey{{"billing", testServiceKey}, {"Billing", otherServiceKey}}, want: "name used twice"},
		{name: "duplicate key", keys: []ServiceKey{{"billing", testServiceKey}, {"reports", testServiceKey}}, want: "key used twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewVerifier(Config{ServiceKeys: tt.keys})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("NewVerifier: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			for _, k := range tt.keys {
				if len(k.Key) >= 4 && strings.Contains(err.Error(), k.Key) {
					t.Fatalf("error %q reveals a key", err)
				}
			}
		})
	}
}

func TestVerifyServiceKey(t *testing.T) {
	both := newTestVerifier(t, Config{ServiceKeys: testServices})
	servicesOnly, err := NewVerifier(Config{ServiceKeys: testServices})
	if err != nil {
		t.Fatal(err)
	}
	servicesOnly.now = func() time.Time { return testNow }

	tests := []struct {
		name   string
		v      *Verifier
		token  string
		want   User // zero means an error is expected
		reason string
	}{
		{name: "first key", v: both, token: testServiceKey, want: User{ID: "svc:billing-backend", Service: true}},
		{name: "second key", v: both, token: otherServiceKey, want: User{ID: "svc:reports", Service: true}},
		{name: "services only", v: servicesOnly, token: testServiceKey, want: User{ID: "svc:billing-backend", Service: true}},
		{name: "JWT still verifies", v: both, token: issue(t, testSecret, IssueOptions{Subject: "billing-backend"}), want: User{ID: "billing-backend", ValidUntil: testNow.Add(time.Hour + DefaultLeeway)}},
		{name: "wrong key", v: both, token: strings.Repeat("x", len(testServiceKey)), reason: "service key invalid"},
		{name: "prefix of a key", v: both, token: testServiceKey[:len(testServiceKey)-1], reason: "service key invalid"},
		{name: "key with extra character", v: both, token: testServiceKey + "0", reason: "service key invalid"},
		{name: "key in other case", v: both, token: strings.ToUpper(testServiceKey), reason: "service key invalid"},
		{name: "short guess", v: both, token: "x", reason: "service key invalid"},
		{name: "JWT-shaped guess goes to the JWT path", v: both, token: "a.b.c", reason: "token malformed"},
		{name: "JWT rejected without a JWT key source", v: servicesOnly, token: issue(t, testSecret, IssueOptions{Subject: "u"}), reason: "token algorithm not allowed"},
		{name: "key as HS256 secret is no service", v: both, token: issue(t, []byte(testServiceKey), IssueOptions{Subject: "u"}), reason: "token signature invalid"},
		{name: "token naming the service", v: both, token: issue(t, testSecret, IssueOptions{Subject: "svc:billing-backend"}), reason: "token subject invalid"},
		{name: "token naming the service in upper case", v: both, token: issue(t, testSecret, IssueOptions{Subject: "SVC:billing-backend"}), reason: "token subject invalid"},
		{name: "token naming the service after spaces", v: both, token: issue(t, testSecret, IssueOptions{Subject: "  svc:billing-backend"}), reason: "token subject invalid"},
		{name: "token naming the service by claim", v: both, token: sign(t, jwt.SigningMethodHS256, withClaims(map[string]any{"sub": "svc:reports"}), testSecret), reason: "token subject invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, err := tt.v.Verify(tt.token)
			if tt.want != (User{}) {
				if err != nil || user != tt.want {
					t.Fatalf("Verify = %+v, %v; want %+v", user, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrUnauthenticated) || err.Error() != "unauthenticated: "+tt.reason {
				t.Fatalf("err = %v, want reason %q", err, tt.reason)
			}
			assertNoSecrets(t, err, tt.token, tt.token)
		})
	}
}

// holds reports whether any string or byte slice reachable from x contains text: fields,
// elements, map keys and values, and what pointers and interfaces point to.
func holds(x reflect.Value, text string, seen map[uintptr]bool) bool {
	switch x.Kind() {
	case reflect.String:
		return strings.Contains(x.String(), text)
	case reflect.Pointer, reflect.Interface:
		if x.IsNil() {
			return false
		}
		if x.Kind() == reflect.Pointer {
			if seen[x.Pointer()] {
				return false
			}
			seen[x.Pointer()] = true
		}
		return holds(x.Elem(), text, seen)
	case reflect.Slice, reflect.Array:
		if x.Kind() == reflect.Slice && x.Type().Elem().Kind() == reflect.Uint8 {
			return strings.Contains(string(x.Bytes()), text)
		}
		for i := range x.Len() {
			if holds(x.Index(i), text, seen) {
				return true
			}
		}
	case reflect.Map:
		for it := x.MapRange(); it.Next(); {
			if holds(it.Key(), text, seen) || holds(it.Value(), text, seen) {
				return true
			}
		}
	case reflect.Struct:
		for i := range x.NumField() {
			if holds(x.Field(i), text, seen) {
				return true
			}
		}
	}
	return false
}

func TestServiceKeysNotKept(t *testing.T) {
	v := newTestVerifier(t, Config{Secret: []byte("jwt-secret-0123456789abcdef0123456789"), ServiceKeys: testServices})
	// Used as it is in a server: a key verified, a message scrubbed.
	if _, err := v.Verify(testServiceKey); err != nil {
		t.Fatal(err)
	}
	if got := v.RedactServiceKeys("key " + testServiceKey); got != "key "+Redacted {
		t.Fatalf("RedactServiceKeys = %q", got)
	}
	// Only hashes are kept: nothing the verifier holds has a key's text.
	for _, key := range []string{testServiceKey, otherServiceKey} {
		if holds(reflect.ValueOf(v), key, map[uintptr]bool{}) {
			t.Errorf("the verifier keeps service key %.6s... in plain text", key)
		}
	}
}

func TestRedactServiceKeys(t *testing.T) {
	short := strings.Repeat("s", MinServiceKeyLen)
	long := short + "-and-more" // holds the shorter key
	v := newTestVerifier(t, Config{ServiceKeys: append(testServices[:2:2],
		ServiceKey{Name: "short", Key: short}, ServiceKey{Name: "long", Key: long})})
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"nothing to see", "nothing to see"},
		{testServiceKey, Redacted},
		{"Bearer " + testServiceKey, "Bearer " + Redacted},
		{`{"key":"` + testServiceKey + `"}`, `{"key":"` + Redacted + `"}`},
		{"keys=billing:" + testServiceKey + ",reports:" + otherServiceKey + ".", "keys=billing:" + Redacted + ",reports:" + Redacted + "."},
		{testServiceKey + testServiceKey, Redacted + Redacted},
		{"x" + long + "x", "x" + Redacted + "x"},
		{short, Redacted},
		{testServiceKey[:len(testServiceKey)-1], testServiceKey[:len(testServiceKey)-1]},
		{"é" + testServiceKey + "\n", "é" + Redacted + "\n"},
	} {
		if got := v.RedactServiceKeys(c.in); got != c.want {
			t.Errorf("RedactServiceKeys(%q) = %q; want %q", c.in, got, c.want)
		}
	}
	if none := newTestVerifier(t, Config{Secret: []byte("jwt-secret-0123456789abcdef0123456789")}); none.RedactServiceKeys(testServiceKey) != testServiceKey {
		t.Error("a verifier without service keys changed a message")
	}
}

func TestMiddlewareServiceKey(t *testing.T) {
	v := newTestVerifier(t, Config{ServiceKeys: testServices})
	var got User
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = ForContext(r.Context())
	}))
	r := httptest.NewRequest(http.MethodPost, "/graphql", nil)
	r.Header.Set("Authorization", "Bearer "+testServiceKey)
	h.ServeHTTP(httptest.NewRecorder(), r)
	if want := (User{ID: "svc:billing-backend", Service: true}); got != want {
		t.Fatalf("user = %+v, want %+v", got, want)
	}
}

func TestCallerKinds(t *testing.T) {
	bg := context.Background()
	endUser := WithUser(bg, User{ID: "alice"})
	service := WithUser(bg, User{ID: "svc:billing-backend", Service: true})
	failed := WithError(bg, unauthenticated("token expired"))
	acting, err := ActAs(service, "alice")
	if err != nil {
		t.Fatalf("ActAs: %v", err)
	}
	actingUser := User{ID: "alice", Actor: "svc:billing-backend"}

	type result struct {
		user User
		err  error // a sentinel the error must wrap
	}
	tests := []struct {
		name                     string
		ctx                      context.Context
		require, service, caller result
	}{
		{"nobody", bg,
			result{err: ErrUnauthenticated}, result{err: ErrUnauthenticated}, result{err: ErrUnauthenticated}},
		{"failed sign-in", failed,
			result{err: ErrUnauthenticated}, result{err: ErrUnauthenticated}, result{err: ErrUnauthenticated}},
		{"end user", endUser,
			result{user: User{ID: "alice"}}, result{err: ErrForbidden}, result{user: User{ID: "alice"}}},
		{"service", service,
			result{err: ErrForbidden}, result{user: User{ID: "svc:billing-backend", Service: true}}, result{user: User{ID: "svc:billing-backend", Service: true}}},
		{"service acting for a user", acting,
			result{user: actingUser}, result{err: ErrForbidden}, result{user: actingUser}},
	}
	check := func(t *testing.T, what string, f func(context.Context) (User, error), ctx context.Context, want result) {
		t.Helper()
		user, err := f(ctx)
		if want.err != nil {
			if !errors.Is(err, want.err) {
				t.Fatalf("%s: err = %v, want %v", what, err, want.err)
			}
			if user != (User{}) {
				t.Fatalf("%s: user %+v returned with an error", what, user)
			}
			return
		}
		if err != nil || user != want.user {
			t.Fatalf("%s = %+v, %v; want %+v", what, user, err, want.user)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, "Require", Require, tt.ctx, tt.require)
			check(t, "RequireService", RequireService, tt.ctx, tt.service)
			check(t, "Caller", Caller, tt.ctx, tt.caller)
		})
	}

	t.Run("forbidden errors are distinct and safe", func(t *testing.T) {
		_, err := RequireService(endUser)
		if errors.Is(err, ErrUnauthenticated) || err.Error() != "forbidden: service credentials required" {
			t.Fatalf("err = %v", err)
		}
		_, err = Require(service)
		if errors.Is(err, ErrUnauthenticated) || err.Error() != "forbidden: a service must act for a user" {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestActAs(t *testing.T) {
	bg := context.Background()
	service := WithUser(bg, User{ID: "svc:billing-backend", Service: true})
	acting, err := ActAs(service, "alice")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		ctx    context.Context
		userID string
		want   error // nil means success
	}{
		{"service", service, "alice", nil},
		{"service, user ID at the limit", service, strings.Repeat("u", MaxSubjectLen), nil},
		{"nobody", bg, "alice", ErrUnauthenticated},
		{"failed sign-in", WithError(bg, unauthenticated("token expired")), "alice", ErrUnauthenticated},
		{"end user", WithUser(bg, User{ID: "mallory"}), "alice", ErrForbidden},
		{"service already acting", acting, "bob", ErrForbidden},
		{"empty user ID", service, "", ErrForbidden},
		{"user ID with spaces around", service, " alice", ErrForbidden},
		{"user ID too long", service, strings.Repeat("u", MaxSubjectLen+1), ErrForbidden},
		{"user ID with control character", service, "al\nice", ErrForbidden},
		{"another service", service, "svc:reports", ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, err := ActAs(tt.ctx, tt.userID)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
				if ctx != tt.ctx {
					t.Fatal("a failed ActAs changed the context")
				}
				return
			}
			if err != nil {
				t.Fatalf("ActAs: %v", err)
			}
			user, err := Require(ctx)
			if err != nil || user.ID != tt.userID || user.Service || user.Actor != "svc:billing-backend" {
				t.Fatalf("Require = %+v, %v", user, err)
			}
			actor, ok := Actor(ctx)
			if !ok || actor.ID != "svc:billing-backend" || !actor.Service {
				t.Fatalf("Actor = %+v, %v", actor, ok)
			}
		})
	}

	t.Run("actor is only the current user's", func(t *testing.T) {
		if _, ok := Actor(service); ok {
			t.Fatal("a service calling in person has an actor")
		}
		if _, ok := Actor(WithUser(bg, User{ID: "alice"})); ok {
			t.Fatal("an end user calling in person has an actor")
		}
		if _, ok := Actor(WithUser(acting, User{ID: "bob"})); ok {
			t.Fatal("the actor outlived the user it acted for")
		}
	})
}
