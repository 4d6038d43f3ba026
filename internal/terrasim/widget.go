package terrasim

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/terragate/terragate/internal/terra"
)

// Widget errors, from Complete and shown by the widget pages.
var (
	ErrUnknownSession  = errors.New("terrasim: unknown widget session")
	ErrSessionExpired  = errors.New("terrasim: widget session expired")
	ErrSessionUsed     = errors.New("terrasim: widget session already completed")
	ErrUnknownProvider = errors.New("terrasim: provider not offered")
)

// session is one widget session.
type session struct {
	id        string
	params    sessionParams
	expiresAt time.Time
	done      bool
}

func (e *Emulator) expiresIn() time.Duration {
	return time.Duration(e.cfg.ExpiresIn) * time.Second
}

// offered lists the providers a session shows: the requested ones, or every cloud one.
func (s *session) offered() []provider {
	if len(s.params.providers) == 0 {
		return cloudProviders
	}
	out := make([]provider, 0, len(s.params.providers))
	for _, code := range s.params.providers {
		if p, ok := lookupProvider(cloudProviders, code); ok {
			out = append(out, p)
		}
	}
	return out
}

// openSession returns a copy of a session that can still be completed.
func (e *Emulator) openSession(id string) (session, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.openSessionLocked(id)
}

func (e *Emulator) openSessionLocked(id string) (session, error) {
	s, ok := e.sessions[id]
	switch {
	case !ok:
		return session{}, ErrUnknownSession
	case s.done:
		return session{}, ErrSessionUsed
	case !e.now().Before(s.expiresAt):
		return session{}, ErrSessionExpired
	}
	return *s, nil
}

// Complete does what the widget's Allow and Deny buttons do. Allow creates a Terra user
// and sends an auth webhook; Deny sends auth_cancelled. It returns where the browser is
// sent next: the session's success or failure URL with Terra's query parameters, or ""
// when the session has none (the widget then shows its own page). A session completes
// only once.
func (e *Emulator) Complete(sessionID, providerCode string, allow bool) (redirectURL string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, err := e.openSessionLocked(sessionID)
	if err != nil {
		return "", err
	}
	var p provider
	for _, o := range s.offered() {
		if strings.EqualFold(o.Code, providerCode) {
			p = o
		}
	}
	if p.Code == "" {
		return "", ErrUnknownProvider
	}
	e.sessions[sessionID].done = true

	ref := "null"
	if s.params.referenceID != nil {
		ref = *s.params.referenceID
	}
	if !allow {
		e.emitLocked(map[string]any{
			"type":         terra.EventAuthCancelled,
			"status":       terra.StatusError,
			"reason":       "user_cancelled",
			"reference_id": s.params.referenceID,
			"flow_id":      s.id,
		})
		if s.params.failureURL == "" {
			return "", nil
		}
		return appendQuery(s.params.failureURL, "reference_id", ref, "resource", p.Code, "reason", "user_cancelled"), nil
	}

	u := e.addUserLocked(p.Code, s.params.referenceID)
	sid := s.id
	e.emitLocked(map[string]any{
		"type":              terra.EventAuth,
		"status":            terra.StatusSuccess,
		"user":              e.touchLocked(u.UserID),
		"reference_id":      s.params.referenceID,
		"widget_session_id": &sid,
		"message":           "User has successfully authenticated",
		"version":           eventVersion,
	})
	if s.params.successURL == "" {
		return "", nil
	}
	return appendQuery(s.params.successURL, "user_id", u.UserID, "resource", p.Code, "reference_id", ref), nil
}

// addUserLocked creates a connection as the widget or a reconnect would.
func (e *Emulator) addUserLocked(providerCode string, referenceID *string) terra.User {
	created := e.now().UTC().Format(terra.TimeFormat)
	active := true
	scopes := defaultScopes
	u := terra.User{
		UserID:      uuid.NewString(),
		Provider:    providerCode,
		ReferenceID: referenceID,
		Active:      &active,
		Scopes:      &scopes,
		CreatedAt:   &created,
	}
	e.seq++
	e.users[u.UserID] = &userRecord{seq: e.seq, user: u}
	return u
}

// appendQuery adds Terra's redirect parameters after any existing query, leaving that
// query byte for byte as the app wrote it.
func appendQuery(raw string, kv ...string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[i]))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(kv[i+1]))
	}
	if u.RawQuery != "" {
		u.RawQuery += "&" + b.String()
	} else {
		u.RawQuery = b.String()
	}
	return u.String()
}

// pageData feeds the widget templates.
type pageData struct {
	Lang      string
	Title     string
	Heading   string
	Text      string
	SessionID string
	Providers []provider
	Provider  provider
	Back      string
	// Connected are the end user's connections the widget offers to disconnect
	// (show_disconnect).
	Connected []connected
}

// connected is one of the end user's connections, as the widget shows it.
type connected struct {
	UserID string
	Name   string
}

var pages = template.Must(template.New("layout").Parse(`<!doctype html>
<html lang="{{.Lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Terra emulator</title>
<style>
body{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem;color:#1d2433}
.banner{background:#fff4ce;border:1px solid #e0c35c;border-radius:6px;padding:.5rem .75rem;font-size:.85rem}
h1{font-size:1.4rem}
ul{list-style:none;padding:0;display:grid;gap:.5rem}
a.provider,button{display:block;width:100%;box-sizing:border-box;padding:.7rem;border-radius:6px;border:1px solid #c5cbd6;background:#fff;color:inherit;font-size:1rem;text-align:center;text-decoration:none;cursor:pointer}
a.provider:hover,button:hover{background:#f1f4f9}
button.allow{background:#1d4ed8;border-color:#1d4ed8;color:#fff}
form{display:grid;gap:.5rem;margin-top:1rem}
</style>
</head>
<body>
<p class="banner" role="note">Terra emulator: a local stand-in for Terra's widget. No real account is connected.</p>
<main>
<h1>{{.Heading}}</h1>
{{if .Text}}<p>{{.Text}}</p>{{end}}
{{block "content" .}}{{end}}
</main>
</body>
</html>
`))

var (
	listPage = template.Must(template.Must(pages.Clone()).Parse(`{{define "content"}}<nav aria-label="Providers"><ul>
{{range .Providers}}<li><a class="provider" href="{{$.SessionID}}/{{.Code}}">{{.Name}}</a></li>
{{end}}</ul></nav>
{{if .Connected}}<h2>Connected</h2>
{{range .Connected}}<form method="post" action="{{$.SessionID}}/disconnect"><input type="hidden" name="user_id" value="{{.UserID}}">
<button type="submit">Disconnect {{.Name}}</button></form>
{{end}}{{end}}{{end}}`))
	consentPage = template.Must(template.Must(pages.Clone()).Parse(`{{define "content"}}<form method="post">
<button class="allow" type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
<p><a href="{{.Back}}">Choose another provider</a></p>{{end}}`))
	messagePage = template.Must(pages.Clone())
)

func (e *Emulator) render(w http.ResponseWriter, code int, t *template.Template, d pageData) {
	if d.Lang == "" {
		d.Lang = "en"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := t.Execute(w, d); err != nil {
		e.log.Error("terrasim: render widget page", "err", err)
	}
}

// sessionError shows a plain page for a session that cannot be used.
func (e *Emulator) sessionError(w http.ResponseWriter, err error) {
	code, text := http.StatusNotFound, "This link is not a widget session. Ask the app for a new one."
	switch {
	case errors.Is(err, ErrSessionExpired):
		code, text = http.StatusGone, "This session has expired. Ask the app for a new link."
	case errors.Is(err, ErrSessionUsed):
		code, text = http.StatusGone, "This session has already been used. Ask the app for a new link."
	case errors.Is(err, ErrUnknownProvider):
		text = "This provider is not offered in this session."
	}
	e.render(w, code, messagePage, pageData{Title: "Session unavailable", Heading: "Session unavailable", Text: text})
}

func lang(s session) string {
	l := s.params.language
	if l == "" || len(l) > 16 || strings.Trim(l, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") != "" {
		return "en"
	}
	return l
}

func (e *Emulator) widgetPage(w http.ResponseWriter, r *http.Request) {
	s, err := e.openSession(r.PathValue("id"))
	if err != nil {
		e.sessionError(w, err)
		return
	}
	e.render(w, http.StatusOK, listPage, pageData{
		Lang: lang(s), Title: "Connect a device", Heading: "Connect a device",
		Text:      "Choose the service that holds your health and fitness data.",
		SessionID: s.id, Providers: s.offered(), Connected: e.disconnectable(s),
	})
}

// disconnectable lists the session's end user's connections when the session was created
// with show_disconnect: the widget then lets them remove one.
func (e *Emulator) disconnectable(s session) []connected {
	if !s.params.showDisconnect || s.params.referenceID == nil {
		return nil
	}
	var out []connected
	for _, u := range e.Users() {
		if u.ReferenceID != nil && *u.ReferenceID == *s.params.referenceID {
			name := u.Provider
			if p, ok := lookupProvider(cloudProviders, u.Provider); ok {
				name = p.Name
			} else if p, ok := lookupProvider(sdkProviders, u.Provider); ok {
				name = p.Name
			}
			out = append(out, connected{UserID: u.UserID, Name: name})
		}
	}
	slices.SortFunc(out, func(a, b connected) int { return strings.Compare(a.Name+a.UserID, b.Name+b.UserID) })
	return out
}

// disconnectAnswer removes one of the end user's connections from the widget, as Terra's
// widget does for a session created with show_disconnect: a deauth webhook follows.
func (e *Emulator) disconnectAnswer(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	s, err := e.openSession(r.PathValue("id"))
	if err != nil {
		e.sessionError(w, err)
		return
	}
	userID := r.PostFormValue("user_id")
	for _, c := range e.disconnectable(s) {
		if c.UserID == userID {
			if err := e.Deauth(userID); err != nil {
				break
			}
			e.render(w, http.StatusOK, messagePage, pageData{Lang: lang(s), Title: "Disconnected",
				Heading: "Disconnected from " + c.Name, Text: "The app no longer receives data from " + c.Name + ". You can close this tab.", Back: s.id})
			return
		}
	}
	// Not one of this end user's connections, or already gone: nothing is disconnected.
	e.render(w, http.StatusNotFound, messagePage, pageData{Lang: lang(s), Title: "Not connected", Heading: "Not connected",
		Text: "That connection is not one this session can disconnect."})
}

func (e *Emulator) offeredProvider(r *http.Request) (session, provider, error) {
	s, err := e.openSession(r.PathValue("id"))
	if err != nil {
		return s, provider{}, err
	}
	for _, p := range s.offered() {
		if strings.EqualFold(p.Code, r.PathValue("provider")) {
			return s, p, nil
		}
	}
	return s, provider{}, ErrUnknownProvider
}

func (e *Emulator) consentPage(w http.ResponseWriter, r *http.Request) {
	s, p, err := e.offeredProvider(r)
	if err != nil {
		e.sessionError(w, err)
		return
	}
	e.render(w, http.StatusOK, consentPage, pageData{
		Lang: lang(s), Title: "Connect " + p.Name, Heading: "Connect " + p.Name,
		Text:     "Allow the app to read your activity, sleep and daily data from " + p.Name + " through Terra?",
		Provider: p, Back: "../" + s.id,
	})
}

func (e *Emulator) consentAnswer(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	var allow bool
	switch r.PostFormValue("decision") {
	case "allow":
		allow = true
	case "deny":
	default:
		e.render(w, http.StatusBadRequest, messagePage, pageData{Title: "Bad request", Heading: "Bad request",
			Text: "Choose Allow or Deny."})
		return
	}
	_, p, err := e.offeredProvider(r)
	if err != nil {
		e.sessionError(w, err)
		return
	}
	next, err := e.Complete(r.PathValue("id"), p.Code, allow)
	if err != nil {
		e.sessionError(w, err)
		return
	}
	if next != "" {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if allow {
		e.render(w, http.StatusOK, messagePage, pageData{Title: "Connected", Heading: "Connected to " + p.Name,
			Text: "You can close this tab."})
		return
	}
	e.render(w, http.StatusOK, messagePage, pageData{Title: "Cancelled", Heading: "Connection cancelled",
		Text: "Nothing was shared. You can close this tab."})
}

func (e *Emulator) indexPage(w http.ResponseWriter, _ *http.Request) {
	e.render(w, http.StatusOK, messagePage, pageData{Title: "Terra emulator", Heading: "Terra emulator",
		Text: "The Terra API is served under /v2 (legacy errors) and /api/v2 (problem+json), widget sessions " +
			"at /api/widget/session, and the controls under /_emulator/."})
}
