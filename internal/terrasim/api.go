package terrasim

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/terragate/terragate/internal/terra"
)

// call is what an API handler gets besides the request.
type call struct {
	style errStyle
	body  []byte
}

func (c *call) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	writeError(w, r, c.style, code, msg)
}

type apiHandler func(w http.ResponseWriter, r *http.Request, c *call)

// endpoint is one API operation under a base.
type endpoint struct {
	method string
	path   string
	public bool // served without credentials
	h      apiHandler
}

func (e *Emulator) routes() {
	e.mux = http.NewServeMux()
	api := []endpoint{
		{http.MethodPost, "/auth/generateWidgetSession", false, e.legacyWidgetSession},
		{http.MethodGet, "/userInfo", false, e.userInfo},
		{http.MethodGet, "/subscriptions", false, e.subscriptions},
		{http.MethodDelete, "/auth/deauthenticateUser", false, e.deauthenticateUser},
		{http.MethodGet, "/integrations", true, e.integrations},
		{http.MethodPost, "/auth/generateAuthToken", false, e.generateAuthToken},
	}
	for _, typ := range DataTypes {
		api = append(api, endpoint{http.MethodGet, "/" + typ, false, e.dataRequest(typ)})
	}
	bases := []struct {
		prefix string
		style  errStyle
	}{{"/v2", legacyErrors}, {"/api/v2", problemErrors}}
	for _, b := range bases {
		for _, ep := range api {
			e.mux.Handle(b.prefix+ep.path, e.api(b.style, ep))
		}
		e.mux.Handle(b.prefix+"/", e.api(b.style, endpoint{h: notFound}))
	}
	// The 2026 widget endpoint, under the path Terra announced and the one its published
	// spec spells.
	widget := endpoint{http.MethodPost, "", false, e.newWidgetSession}
	e.mux.Handle("/api/widget/session", e.api(legacyErrors, widget))
	e.mux.Handle("/widget/api/session", e.api(legacyErrors, widget))

	e.mux.HandleFunc("GET /widget/session/{id}", e.widgetPage)
	e.mux.HandleFunc("POST /widget/session/{id}/disconnect", e.disconnectAnswer)
	e.mux.HandleFunc("GET /widget/session/{id}/{provider}", e.consentPage)
	e.mux.HandleFunc("POST /widget/session/{id}/{provider}", e.consentAnswer)

	e.adminRoutes()
	e.mux.HandleFunc("GET /{$}", e.indexPage)
}

// api wraps an endpoint with what every API call goes through: recording, fault
// injection, the method check and credentials.
func (e *Emulator) api(style errStyle, ep endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{style: style}
		body, ok := readBody(r)
		e.record(r, body)
		if !ok {
			c.fail(w, r, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		c.body = body

		if f, ok := e.takeFault(r.URL.Path); ok {
			if f.Delay > 0 && !e.sleep(r.Context(), f.Delay) {
				return
			}
			switch {
			case f.Hang:
				select {
				case <-r.Context().Done(): // the caller gave up
				case <-e.ctx.Done():
					resetConn(w) // closing: still no answer
				}
				return
			case f.Reset:
				resetConn(w)
				return
			case f.Garbage:
				writeGarbage(w, f)
				return
			case f.Status != 0:
				writeFault(w, f)
				return
			}
		}
		if ep.method != "" && r.Method != ep.method {
			w.Header().Set("Allow", ep.method)
			c.fail(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
			return
		}
		if !ep.public {
			if code, msg := e.checkCredentials(r); code != 0 {
				c.fail(w, r, code, msg)
				return
			}
		}
		ep.h(w, r, c)
	})
}

func writeFault(w http.ResponseWriter, f Fault) {
	for k, vs := range f.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if f.ContentType != "" {
		w.Header().Set("Content-Type", f.ContentType)
	}
	w.WriteHeader(f.Status)
	_, _ = w.Write([]byte(f.Body))
}

// garbageBody is a JSON answer cut off halfway.
const garbageBody = `{"status":"success","users":[{"user_id":"`

func writeGarbage(w http.ResponseWriter, f Fault) {
	for k, vs := range f.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(garbageBody))
}

// resetConn drops the connection under w without answering. A connection that cannot be
// taken over (HTTP/2) has its stream aborted instead.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn() // no close_notify: the peer just sees the connection go
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST, not FIN
	}
	_ = raw.Close()
}

func notFound(w http.ResponseWriter, r *http.Request, c *call) {
	c.fail(w, r, http.StatusNotFound, "no such endpoint")
}

// sessionParams is a validated widget session request.
type sessionParams struct {
	providers   []string
	language    string
	referenceID *string
	successURL  string
	failureURL  string
	// showDisconnect lets the end user remove a connection of theirs from the widget.
	showDisconnect bool
}

func (e *Emulator) legacyWidgetSession(w http.ResponseWriter, r *http.Request, c *call) {
	if e.cfg.LegacyGone {
		c.fail(w, r, http.StatusGone, "this endpoint is no longer available to your account; use POST "+
			e.baseURL(r)+"/api/widget/session")
		return
	}
	e.widgetSession(w, r, c)
}

// newWidgetSession is the 2026 endpoint, which an account not yet moved does not have.
func (e *Emulator) newWidgetSession(w http.ResponseWriter, r *http.Request, c *call) {
	if e.cfg.LegacyOnly {
		c.fail(w, r, http.StatusNotFound, "no such endpoint")
		return
	}
	e.widgetSession(w, r, c)
}

func (e *Emulator) widgetSession(w http.ResponseWriter, r *http.Request, c *call) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		c.fail(w, r, http.StatusBadRequest, "Content-Type must be application/json")
		return
	}
	p, err := parseSessionParams(c.body)
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	s := &session{
		id:        uuid.NewString(),
		params:    p,
		expiresAt: e.now().Add(e.expiresIn()),
	}
	e.mu.Lock()
	e.sessions[s.id] = s
	e.created++
	if e.created%pruneEvery == 0 {
		e.pruneSessionsLocked()
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"session_id": s.id,
		"url":        e.baseURL(r) + "/widget/session/" + s.id,
		"status":     "success",
		"expires_in": e.cfg.ExpiresIn,
	})
}

// parseSessionParams validates a widget session body: a JSON object whose known fields
// are strings (show_disconnect, sent by old SDKs, a boolean); unknown fields are ignored.
func parseSessionParams(body []byte) (sessionParams, error) {
	var p sessionParams
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return p, fmt.Errorf("request body must be a JSON object")
	}
	str := func(name string) (string, error) {
		raw, ok := fields[name]
		if !ok || string(raw) == "null" {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%s must be a string", name)
		}
		return strings.TrimSpace(s), nil
	}
	if raw, ok := fields["show_disconnect"]; ok && string(raw) != "null" {
		if json.Unmarshal(raw, &p.showDisconnect) != nil {
			return p, fmt.Errorf("show_disconnect must be a boolean")
		}
	}

	providers, err := str("providers")
	if err != nil {
		return p, err
	}
	for _, code := range terra.SplitScopes(providers) {
		pr, ok := lookupProvider(cloudProviders, code)
		if !ok {
			if _, sdk := lookupProvider(sdkProviders, code); sdk {
				return p, fmt.Errorf("%s is only available through Terra's mobile SDKs", strings.ToUpper(code))
			}
			return p, fmt.Errorf("unknown provider %q", code)
		}
		if !containsString(p.providers, pr.Code) {
			p.providers = append(p.providers, pr.Code)
		}
	}
	if p.language, err = str("language"); err != nil {
		return p, err
	}
	ref, err := str("reference_id")
	if err != nil {
		return p, err
	}
	if ref != "" {
		p.referenceID = &ref
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"auth_success_redirect_url", &p.successURL}, {"auth_failure_redirect_url", &p.failureURL}} {
		v, err := str(f.name)
		if err != nil {
			return p, err
		}
		if v != "" {
			// Deep links (myapp://connected) are fine; relative URLs mean nothing here.
			if u, err := url.Parse(v); err != nil || u.Scheme == "" {
				return p, fmt.Errorf("%s must be an absolute URL", f.name)
			}
		}
		*f.dst = v
	}
	return p, nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (e *Emulator) userInfo(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	switch {
	case q.Get("user_id") != "":
		u, ok := e.user(q.Get("user_id"))
		if !ok {
			c.fail(w, r, http.StatusNotFound, "user not found")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"user":             u,
			"status":           "success",
			"is_authenticated": u.Active != nil && *u.Active,
		})
	case q.Has("reference_id"):
		ref := q.Get("reference_id")
		users := []terra.User{}
		for _, u := range e.Users() {
			if u.ReferenceID != nil && *u.ReferenceID == ref {
				users = append(users, u)
			}
		}
		writeJSON(w, http.StatusOK, users)
	default:
		c.fail(w, r, http.StatusBadRequest, "user_id or reference_id must be provided")
	}
}

func (e *Emulator) subscriptions(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	users := e.Users()
	if !q.Has("page") {
		writeJSON(w, http.StatusOK, map[string]any{"users": users})
		return
	}
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 0 {
		c.fail(w, r, http.StatusBadRequest, "page must be a non-negative integer")
		return
	}
	perPage := 500
	if q.Has("per_page") {
		perPage, err = strconv.Atoi(q.Get("per_page"))
		if err != nil || perPage < 1 {
			c.fail(w, r, http.StatusBadRequest, "per_page must be a positive integer")
			return
		}
	}
	maxPage := 0
	if len(users) > 0 {
		maxPage = (len(users) - 1) / perPage
	}
	results := []terra.User{}
	if page <= maxPage {
		start := page * perPage
		results = users[start:min(start+perPage, len(users))]
	}
	var next *int
	if page < maxPage {
		n := page + 1
		next = &n
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"data": map[string]any{"next": next, "max_page": maxPage, "results": results},
	})
}

func (e *Emulator) deauthenticateUser(w http.ResponseWriter, r *http.Request, c *call) {
	id := r.URL.Query().Get("user_id")
	if id == "" {
		c.fail(w, r, http.StatusBadRequest, "user_id must be provided")
		return
	}
	if err := e.Deauth(id); err != nil {
		c.fail(w, r, http.StatusNotFound, "user not found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "success"})
}

func (e *Emulator) integrations(w http.ResponseWriter, _ *http.Request, _ *call) {
	writeJSON(w, http.StatusOK, map[string]any{
		"providers":     providerCodes(cloudProviders),
		"sdk_providers": providerCodes(sdkProviders),
		"status":        "success",
	})
}
