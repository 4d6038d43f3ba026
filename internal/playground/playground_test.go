package playground

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                     false,
		"gzip":                 true,
		"gzip, deflate, br":    true,
		"br;q=1.0, GZIP;q=0.5": true,
		"gzip;q=0":             false,
		"gzip; q=0.000":        false,
		"identity":             false,
		"x-gzip":               false,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Accept-Encoding", header)
		if got := acceptsGzip(r); got != want {
			t.Errorf("Accept-Encoding %q: gzip %v, want %v", header, got, want)
		}
	}
}

// TestPageCarriesSettingsAsData checks that the headers reach the page as JSON the bundled
// script can parse, escaped so that no value can close the data block.
func TestPageCarriesSettingsAsData(t *testing.T) {
	w := httptest.NewRecorder()
	Page("/graphql", map[string]string{"Authorization": "Bearer a.b.c", "X-Evil": "</script><script>alert(1)</script>"}).
		ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	body := w.Body.String()
	if strings.Count(body, "</script>") != 2 {
		t.Errorf("a header value closed the data block:\n%s", body)
	}
	if !strings.Contains(body, `"Authorization":"Bearer a.b.c"`) || !strings.Contains(body, `"endpoint":"/graphql"`) {
		t.Errorf("the settings are not in the page:\n%s", body)
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Error("the page may carry a token: it must not be cached")
	}
}
