package widget

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/terragate/terragate/internal/store"
)

// Outcomes a return URL is issued for; each is part of the signed state.
const (
	outcomeSuccess = "success"
	outcomeFailure = "failure"
)

// stateTTL is how long after creation a return URL is honoured: the widget's own lifetime
// (15 minutes) plus time for a slow provider sign-in.
const stateTTL = time.Hour

// ReturnPath is the path prefix of the return URLs handed to Terra.
const ReturnPath = "/widget/return/"

// returnURL is the URL Terra sends the browser back to: terragate's, with a signed state
// that names the session and the outcome, so Terra's unsigned parameters are never trusted.
func (s *Service) returnURL(id, outcome string, now time.Time) string {
	exp := strconv.FormatInt(now.Add(stateTTL).Unix(), 10)
	state := outcome + "." + exp + "." + s.mac(id, outcome, exp)
	return s.cfg.PublicURL + ReturnPath + url.PathEscape(id) + "?state=" + url.QueryEscape(state)
}

func (s *Service) mac(id, outcome, exp string) string {
	m := hmac.New(sha256.New, s.cfg.StateKey)
	m.Write([]byte("terragate widget return\x00" + id + "\x00" + outcome + "\x00" + exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkState returns the outcome a valid state was issued for.
func (s *Service) checkState(id, state string, now time.Time) (string, bool) {
	parts := strings.Split(state, ".")
	if len(parts) != 3 || (parts[0] != outcomeSuccess && parts[0] != outcomeFailure) {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || now.Unix() > exp {
		return "", false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(s.mac(id, parts[0], parts[1]))) {
		return "", false
	}
	return parts[0], true
}

// ServeReturn handles GET /widget/return/{sessionId}: the browser coming back from the
// widget. It checks the signed single-use state, confirms a connection with Terra when the
// webhook has not arrived yet, records the result, and sends the browser on (303) to the
// app's URL with session_id, status and provider (and Terra's user_id once confirmed). A
// forged or replayed request changes nothing and gets a plain error page.
func (s *Service) ServeReturn(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("sessionId")
	now := s.now().UTC()
	outcome, ok := s.checkState(id, r.URL.Query().Get("state"), now)
	if !ok {
		returnError(w, http.StatusBadRequest, "This link is not valid.")
		return
	}
	sess, err := s.store.WidgetSession(ctx, id)
	if err != nil {
		returnError(w, http.StatusNotFound, "This connection attempt is unknown.")
		return
	}
	if err := s.store.ConsumeWidgetReturn(ctx, id, now); err != nil {
		if errors.Is(err, store.ErrConflict) {
			returnError(w, http.StatusConflict, "This link was already used.")
			return
		}
		s.log.ErrorContext(ctx, "widget return not recorded", "session_id", id, "err", err)
		returnError(w, http.StatusInternalServerError, "Something went wrong; please go back to the app.")
		return
	}

	q := r.URL.Query()
	provider := strings.ToUpper(strings.TrimSpace(q.Get("resource")))
	target := sess.SuccessRedirectURL
	var userID string
	if outcome == outcomeFailure {
		target = sess.FailureRedirectURL
		sess = s.recordFailure(r, sess, provider, q.Get("reason"))
	} else {
		sess, userID = s.confirmSuccess(r, sess, q.Get("user_id"))
	}
	if sess.Provider != "" {
		provider = sess.Provider
	}
	params := url.Values{
		"session_id": {sess.ID},
		"status":     {string(EffectiveStatus(sess, now))},
	}
	if provider != "" {
		params.Set("provider", provider)
	}
	if userID != "" {
		params.Set("user_id", userID)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, appendQuery(target, params), http.StatusSeeOther)
}

// confirmSuccess returns the session as it stands after a success redirect, and the user_id
// to pass on: only a confirmed one, or the literal "null" of a phone-only source.
func (s *Service) confirmSuccess(r *http.Request, sess store.WidgetSession, rawUserID string) (store.WidgetSession, string) {
	ctx := r.Context()
	if sess.Status == store.SessionCompleted {
		return sess, sess.TerraUserID // the signed webhook came first
	}
	userID := strings.TrimSpace(rawUserID)
	if userID == "null" {
		return sess, "null" // phone-only sources have no Terra user until the SDK connects
	}
	if userID == "" {
		return sess, ""
	}
	info, err := s.terra.UserInfo(ctx, userID)
	if err != nil {
		// Unknown to Terra yet, or Terra is down: the webhook will settle it.
		s.log.InfoContext(ctx, "widget return not confirmed", "session_id", sess.ID, "err", err)
		return sess, ""
	}
	if info.User.UserID != userID || info.User.ReferenceID == nil || *info.User.ReferenceID != sess.ReferenceID {
		s.log.WarnContext(ctx, "widget return names another end user's connection", "session_id", sess.ID)
		return sess, ""
	}
	out, err := s.apply.ConfirmReturn(ctx, sess, info.User)
	if err != nil {
		s.log.ErrorContext(ctx, "confirmed widget return not recorded", "session_id", sess.ID, "err", err)
		return sess, ""
	}
	if out.Session != nil {
		sess = *out.Session
	} else if fresh, err := s.store.WidgetSession(ctx, sess.ID); err == nil {
		sess = fresh
	}
	if sess.Status == store.SessionCompleted {
		return sess, sess.TerraUserID
	}
	return sess, ""
}

// recordFailure marks a still open session FAILED after a failure redirect.
func (s *Service) recordFailure(r *http.Request, sess store.WidgetSession, provider, reason string) store.WidgetSession {
	ctx := r.Context()
	if sess.Status != store.SessionCreated {
		return sess
	}
	reason = strings.TrimSpace(reason)
	if reason == "" || len(reason) > 200 {
		reason = "failed"
	}
	out, err := s.apply.FailReturn(ctx, sess, provider, reason)
	if err != nil {
		s.log.ErrorContext(ctx, "widget failure not recorded", "session_id", sess.ID, "err", err)
		return sess
	}
	if out.Session != nil {
		return *out.Session
	}
	return sess
}

// appendQuery adds params after the URL's own query, keeping it (and any fragment).
func appendQuery(raw string, params url.Values) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	if u.RawQuery == "" {
		u.RawQuery = params.Encode()
	} else {
		u.RawQuery += "&" + params.Encode()
	}
	return u.String()
}

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>terragate</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;line-height:1.5}</style>
</head><body><h1>{{.}}</h1><p>Please go back to the app and try connecting again.</p></body></html>
`))

func returnError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = errorPage.Execute(w, msg)
}
