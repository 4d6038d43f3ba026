package gateway

import (
	"bytes"
	"strings"
	"testing"

	"github.com/terragate/terragate/internal/auth"
	"github.com/terragate/terragate/internal/config"
)

const (
	testWebhookSecret = "whsec_SECRET_0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	testServiceKey    = "svc_KEY_5e4d3c2b1a09f8e7d6c5b4a3928170ff"
)

// The user-hash key is a stable function of the webhook secret, different from the other
// keys derived from it.
func TestUserHashKey(t *testing.T) {
	a, b := UserHashKey(testWebhookSecret), UserHashKey(testWebhookSecret)
	if !bytes.Equal(a, b) {
		t.Error("two derivations from one secret differ")
	}
	if bytes.Equal(a, UserHashKey(testWebhookSecret+"x")) || bytes.Equal(a, stateKey(testWebhookSecret)) {
		t.Error("the key is shared with another secret or another use")
	}
}

// The list of secrets handed to the GraphQL handler for scrubbing holds no service key: the
// keys are kept hashed, and the verifier finds them in a message by their hashes.
func TestSecretsOfKeepsNoServiceKey(t *testing.T) {
	other := strings.Repeat("k", 40)
	cfg := config.Config{TerraAPIKey: "api-key", TerraWebhookSecrets: []string{testWebhookSecret}, AuthJWTSecret: "jwt",
		ServiceAPIKeys: auth.ParseServiceKeys("backend:" + testServiceKey + ",ops:" + other)}
	for i, s := range secretsOf(cfg) {
		if strings.Contains(s, testServiceKey) || strings.Contains(s, other) {
			t.Errorf("secret %d of the scrub list holds a raw service key", i)
		}
	}
}
