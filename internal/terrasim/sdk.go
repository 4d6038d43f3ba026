package terrasim

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/terragate/terragate/internal/terra"
)

// Errors of SDKConnect: the token a device presents is checked as Terra checks it.
var (
	ErrUnknownToken = errors.New("terrasim: unknown SDK token")
	ErrTokenUsed    = errors.New("terrasim: SDK token already used")
	ErrTokenExpired = errors.New("terrasim: SDK token expired")
)

// sdkTokenTTL is the life of a mobile SDK token (Terra's expires_in).
const sdkTokenTTL = 180 * time.Second

// sdkToken is one minted mobile SDK token.
type sdkToken struct {
	expiresAt time.Time
	used      bool
}

// generateAuthToken is POST /auth/generateAuthToken: a single-use token for the mobile
// SDKs' initConnection, minted with the account's credentials. Terra takes no body.
func (e *Emulator) generateAuthToken(w http.ResponseWriter, _ *http.Request, _ *call) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	e.mu.Lock()
	if len(e.tokens) >= pruneEvery {
		e.pruneTokensLocked()
	}
	e.tokens[tok] = &sdkToken{expiresAt: e.now().Add(sdkTokenTTL)}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"status":     "success",
		"token":      tok,
		"expires_in": int(sdkTokenTTL / time.Second),
	})
}

// pruneTokensLocked forgets tokens that can no longer be used: spent or expired ones
// answer as unknown once forgotten, which a device cannot tell apart in practice.
func (e *Emulator) pruneTokensLocked() {
	now := e.now()
	for tok, t := range e.tokens {
		if t.used || !now.Before(t.expiresAt) {
			delete(e.tokens, tok)
		}
	}
}

// SDKConnect plays a phone connecting a source through Terra's mobile SDK: the app
// called Terra.instance(devId, referenceID) and initConnection with token, which its
// backend minted. The token is spent (a used, expired or unknown one is refused, as Terra
// refuses it), a Terra user is created for providerCode (one of the SDK providers, such as
// APPLE) with the reference_id the device chose, and the auth webhook follows, without a
// widget_session_id. referenceID may be empty.
func (e *Emulator) SDKConnect(token, providerCode, referenceID string) (terra.User, error) {
	p, ok := lookupProvider(sdkProviders, providerCode)
	if !ok {
		return terra.User{}, ErrUnknownProvider
	}
	var ref *string
	if referenceID != "" {
		ref = &referenceID
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tokens[token]
	switch {
	case !ok:
		return terra.User{}, ErrUnknownToken
	case t.used:
		return terra.User{}, ErrTokenUsed
	case !e.now().Before(t.expiresAt):
		return terra.User{}, ErrTokenExpired
	}
	t.used = true
	return e.connectLocked(p.Code, ref), nil
}
