package auth

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fuzzRaw, as the signer, makes the fuzzer's header the whole credential, so
// arbitrary strings reach Verify too.
const fuzzRaw = 255

// FuzzVerify checks that Verify never panics and never accepts a credential
// that a configured key did not sign. The fuzzer picks a header, claims and a
// signer: the real HS256 secret, RSA or EC key, a rogue key of each kind, the
// RSA public key (as PEM or JWK) used as an HMAC secret, no signature, or
// bytes of its own; so mutated headers and claims arrive correctly signed and
// get past the signature check, where the interesting decisions are.
//
// Invariant: whatever is accepted is a configured service key, or a JWT whose
// alg is HS256, RS256 or ES256 and whose signature verifies, checked here
// without the verifier, under that alg with the one real key for it.
func FuzzVerify(f *testing.F) {
	k := testKeys()
	srv := newJWKSServer(f, defaultJWKS()...)
	// A long refresh limit: made-up key IDs cost one fetch, not one per input.
	v := newJWKSVerifier(f, srv, Config{Secret: testSecret, ServiceKeys: testServices, JWKSRefreshLimit: time.Hour})

	pemKey := publicPEM(f, k.rsa1)
	jwkKey, err := json.Marshal(rsaJWK("rsa-1", k.rsa1))
	if err != nil {
		f.Fatal(err)
	}
	signers := []struct {
		method jwt.SigningMethod
		key    any
	}{
		{jwt.SigningMethodHS256, testSecret},
		{jwt.SigningMethodRS256, k.rsa1},
		{jwt.SigningMethodES256, k.ec1},
		{jwt.SigningMethodHS256, otherSecret},
		{jwt.SigningMethodRS256, k.rogueRSA},
		{jwt.SigningMethodES256, k.rogueEC},
		{jwt.SigningMethodHS256, pemKey},
		{jwt.SigningMethodHS256, jwkKey},
		{jwt.SigningMethodRS256, k.weakRSA},
		{jwt.SigningMethodHS512, testSecret},
	}
	const noSignature, ownSignature = 10, 11

	claims := `{"sub":"user-1","iss":"https://idp.example.com/","aud":"terragate","nbf":1772366400,"exp":1772370000}`
	for _, seed := range []struct {
		header string
		signer uint8
	}{
		{`{"alg":"HS256","typ":"JWT"}`, 0},
		{`{"alg":"RS256","kid":"rsa-1"}`, 1},
		{`{"alg":"ES256","kid":"ec-1"}`, 2},
		{`{"alg":"RS256"}`, 1},
		{`{"alg":"HS256","kid":"rsa-1"}`, 6},
		{`{"alg":"HS256","kid":"rsa-1"}`, 7},
		{`{"alg":"ES256","kid":"rsa-1"}`, 2},
		{`{"alg":"RS256","kid":"ec-1"}`, 1},
		{`{"alg":"none"}`, noSignature},
		{`{"alg":"RS256","kid":"rsa-1","crit":["b64"]}`, 1},
	} {
		f.Add([]byte(seed.header), []byte(claims), seed.signer, []byte(nil))
	}
	valid := signKID(f, jwt.SigningMethodRS256, "rsa-1", idpClaims(), k.rsa1)
	f.Add([]byte(valid), []byte(nil), uint8(fuzzRaw), []byte(nil))
	f.Add([]byte(testServiceKey), []byte(nil), uint8(fuzzRaw), []byte(nil))

	f.Fuzz(func(t *testing.T, header, payload []byte, signer uint8, sig []byte) {
		var token string
		switch {
		case signer == fuzzRaw:
			token = string(header)
		default:
			input := b64(header) + "." + b64(payload)
			switch i := int(signer) % (len(signers) + 2); i {
			case noSignature:
				token = input + "."
			case ownSignature:
				token = input + "." + b64(sig)
			default:
				s, err := signers[i].method.Sign(input, signers[i].key)
				if err != nil {
					t.Fatalf("sign: %v", err)
				}
				token = input + "." + b64(s)
			}
		}

		user, err := v.Verify(token)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "unauthenticated: ") {
				t.Fatalf("error %q is not an authentication failure", err)
			}
			if strings.Contains(err.Error(), string(testSecret)) || strings.Contains(err.Error(), testServiceKey) {
				t.Fatalf("error %q reveals a secret", err)
			}
			return
		}
		if user.Service {
			if token != testServiceKey && token != otherServiceKey {
				t.Fatalf("accepted %q as service %q", token, user.ID)
			}
			return
		}
		if user.ID == "" || hasServicePrefix(user.ID) || user.Actor != "" {
			t.Fatalf("accepted user %+v", user)
		}
		if err := verifyIndependently(token, &k.rsa1.PublicKey, &k.ec1.PublicKey); err != "" {
			t.Fatalf("accepted a token that %s: %q", err, token)
		}
	})
}

// verifyIndependently checks token's signature with the real key for its alg,
// without the verifier, and says what is wrong, or "".
func verifyIndependently(token string, rsaKey *rsa.PublicKey, ecKey *ecdsa.PublicKey) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "is not a compact JWS"
	}
	rawHeader, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return "has an undecodable header"
	}
	// A map, as the verifier's library reads it: a struct would also match
	// "ALG" and could see another alg than the verifier did.
	var header map[string]any
	if json.Unmarshal(rawHeader, &header) != nil {
		return "has an unreadable header"
	}
	alg, _ := header["alg"].(string)
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "has an undecodable signature"
	}
	var (
		method jwt.SigningMethod
		key    any
	)
	switch alg {
	case "HS256":
		method, key = jwt.SigningMethodHS256, testSecret
	case "RS256":
		method, key = jwt.SigningMethodRS256, rsaKey
	case "ES256":
		method, key = jwt.SigningMethodES256, ecKey
	default:
		return "uses alg " + alg
	}
	if method.Verify(parts[0]+"."+parts[1], sig, key) != nil {
		return "the real " + alg + " key did not sign"
	}
	return ""
}
