package terrasim

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// AdminPrefix is where the HTTP controls live, for teams that drive the emulator from
// other languages. They take the same dev-id and x-api-key as the API.
const AdminPrefix = "/_emulator"

// faultJSON is Fault over HTTP; delay is a Go duration string such as "1.5s".
type faultJSON struct {
	Path        string      `json:"path"`
	Status      int         `json:"status"`
	Body        string      `json:"body"`
	ContentType string      `json:"content_type"`
	Header      http.Header `json:"header"`
	Delay       string      `json:"delay"`
	Hang        bool        `json:"hang"`
	Reset       bool        `json:"reset"`
	Garbage     bool        `json:"garbage"`
	Times       int         `json:"times"`
}

type userIDJSON struct {
	UserID string `json:"user_id"`
}

func (e *Emulator) adminRoutes() {
	handle := func(pattern string, h func(w http.ResponseWriter, r *http.Request, body []byte)) {
		e.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if code, msg := e.checkCredentials(r); code != 0 {
				writeError(w, r, legacyErrors, code, msg)
				return
			}
			body, ok := readBody(r)
			if !ok {
				writeError(w, r, legacyErrors, http.StatusRequestEntityTooLarge, "request body too large")
				return
			}
			h(w, r, body)
		})
	}
	p := AdminPrefix

	handle("GET "+p+"/users", func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		writeJSON(w, http.StatusOK, map[string]any{"users": e.Users()})
	})
	handle("GET "+p+"/requests", func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		writeJSON(w, http.StatusOK, map[string]any{"requests": e.Requests()})
	})
	handle("GET "+p+"/deliveries", func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		writeJSON(w, http.StatusOK, map[string]any{"deliveries": e.Deliveries()})
	})
	handle("POST "+p+"/connect", func(w http.ResponseWriter, r *http.Request, body []byte) {
		var in struct {
			Provider    string `json:"provider"`
			ReferenceID string `json:"reference_id"`
		}
		if !decodeAdmin(w, r, body, &in) {
			return
		}
		u, err := e.Connect(in.Provider, in.ReferenceID)
		if err != nil {
			writeError(w, r, legacyErrors, http.StatusBadRequest, "unknown provider")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "user": u})
	})
	handle("POST "+p+"/sdk-connect", func(w http.ResponseWriter, r *http.Request, body []byte) {
		var in struct {
			Token       string `json:"token"`
			Provider    string `json:"provider"`
			ReferenceID string `json:"reference_id"`
		}
		if !decodeAdmin(w, r, body, &in) {
			return
		}
		if in.Token == "" || in.Provider == "" {
			writeError(w, r, legacyErrors, http.StatusBadRequest, "token and provider are required")
			return
		}
		u, err := e.SDKConnect(in.Token, in.Provider, in.ReferenceID)
		if err != nil {
			adminError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "user": u})
	})
	userControl := func(name string, f func(id string) error) {
		handle("POST "+p+"/"+name, func(w http.ResponseWriter, r *http.Request, body []byte) {
			var in userIDJSON
			if !decodeAdmin(w, r, body, &in) {
				return
			}
			if err := f(in.UserID); err != nil {
				adminError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"status": "success"})
		})
	}
	userControl("deauth", e.Deauth)
	userControl("revoke", e.RevokeAccess)
	userControl("connection-error", e.ConnectionError)
	handle("POST "+p+"/reauth", func(w http.ResponseWriter, r *http.Request, body []byte) {
		var in userIDJSON
		if !decodeAdmin(w, r, body, &in) {
			return
		}
		u, err := e.Reauth(in.UserID)
		if err != nil {
			adminError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "user": u})
	})
	handle("POST "+p+"/permissions", func(w http.ResponseWriter, r *http.Request, body []byte) {
		var in struct {
			UserID  string   `json:"user_id"`
			Added   []string `json:"added"`
			Removed []string `json:"removed"`
		}
		if !decodeAdmin(w, r, body, &in) {
			return
		}
		if err := e.ChangePermissions(in.UserID, in.Added, in.Removed); err != nil {
			adminError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "success"})
	})
	handle("POST "+p+"/backfill", func(w http.ResponseWriter, r *http.Request, body []byte) {
		var in struct {
			UserID string `json:"user_id"`
			Type   string `json:"type"`
			Days   int    `json:"days"`
		}
		if !decodeAdmin(w, r, body, &in) {
			return
		}
		ref, err := e.Backfill(in.UserID, in.Type, in.Days)
		var rl rateLimited
		switch {
		case errors.As(err, &rl):
			writeError(w, r, legacyErrors, http.StatusTooManyRequests, err.Error())
		case err != nil:
			adminError(w, r, err)
		default:
			writeJSON(w, http.StatusOK, map[string]string{"status": "success", "reference": ref})
		}
	})
	handle("POST "+p+"/complete", func(w http.ResponseWriter, r *http.Request, body []byte) {
		var in struct {
			SessionID string `json:"session_id"`
			Provider  string `json:"provider"`
			Allow     bool   `json:"allow"`
		}
		if !decodeAdmin(w, r, body, &in) {
			return
		}
		next, err := e.Complete(in.SessionID, in.Provider, in.Allow)
		if err != nil {
			adminError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "success", "redirect_url": next})
	})
	handle("POST "+p+"/fail", func(w http.ResponseWriter, r *http.Request, body []byte) {
		var in faultJSON
		if !decodeAdmin(w, r, body, &in) {
			return
		}
		var delay time.Duration
		if in.Delay != "" {
			d, err := time.ParseDuration(in.Delay)
			if err != nil || d < 0 {
				writeError(w, r, legacyErrors, http.StatusBadRequest, `delay must be a duration such as "1.5s"`)
				return
			}
			delay = d
		}
		if in.Path == "" || (in.Status == 0 && delay == 0 && !in.Hang && !in.Reset && !in.Garbage) {
			writeError(w, r, legacyErrors, http.StatusBadRequest, "path and one of status, delay, hang, reset or garbage are required")
			return
		}
		e.Fail(in.Path, Fault{Status: in.Status, Body: in.Body, ContentType: in.ContentType,
			Header: in.Header, Delay: delay, Hang: in.Hang, Reset: in.Reset, Garbage: in.Garbage, Times: in.Times})
		writeJSON(w, http.StatusOK, map[string]string{"status": "success"})
	})
}

func decodeAdmin(w http.ResponseWriter, r *http.Request, body []byte, v any) bool {
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, r, legacyErrors, http.StatusBadRequest, "request body must be a JSON object of the documented fields")
		return false
	}
	return true
}

func adminError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusBadRequest
	switch {
	case errors.Is(err, ErrUnknownUser), errors.Is(err, ErrUnknownSession), errors.Is(err, ErrUnknownProvider),
		errors.Is(err, ErrUnknownToken):
		code = http.StatusNotFound
	case errors.Is(err, ErrSessionExpired), errors.Is(err, ErrSessionUsed), errors.Is(err, ErrTokenExpired), errors.Is(err, ErrTokenUsed):
		code = http.StatusGone
	}
	writeError(w, r, legacyErrors, code, err.Error())
}
