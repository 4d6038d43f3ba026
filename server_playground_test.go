package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/terragate/terragate/graph"
)

// TestPlaygroundInBrowser opens the playground in Chromium with every other origin refused
// (as offline), runs connectedUsers with the demo's pre-filled token, and reads a field's
// description in the docs explorer. The gateway must serve everything the page needs.
func TestPlaygroundInBrowser(t *testing.T) {
	node := requireBrowser(t)
	base, bearer, logs := startDemo(t)

	// A connection, so the playground has a user id to show.
	g := &gateway{t: t, url: base, seen: &syncBuffer{}}
	s := g.createSession(bearer, map[string]any{"providers": []string{"OURA"}, "successRedirectUrl": g.public() + "/demo/return"})
	connectInBrowser(t, s.URL, "Oura", "allow")
	users := g.waitUsers(bearer, false, "the demo connection", func(u []terraUser) bool { return len(u) == 1 })

	// The docs must show connectedUsers' description as the schema has it.
	field := graph.NewExecutableSchema(graph.Config{}).Schema().Query.Fields.ForName("connectedUsers")
	if field == nil || field.Description == "" {
		t.Fatal("connectedUsers has no description to look for")
	}
	doc, _, _ := strings.Cut(field.Description, ":")

	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "playground.mjs")
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(), "PLAYGROUND_URL="+base+"/", "PLAYGROUND_TOKEN="+bearer, "PLAYGROUND_DOC="+doc)
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	t.Logf("playground.mjs took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("playground.mjs: %v\nstderr:\n%s\nstdout:\n%s\ngateway logs:\n%s", err, errOut.String(), out.String(), logs.String())
	}
	t.Logf("summary: %s", bytes.TrimSpace(out.Bytes()))

	var sum struct {
		OK   bool `json:"ok"`
		Data struct {
			ConnectedUsers []struct {
				UserID string `json:"userId"`
			} `json:"connectedUsers"`
		} `json:"data"`
		DocTitle      string   `json:"docTitle"`
		ConsoleErrors []string `json:"consoleErrors"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &sum); err != nil {
		t.Fatalf("summary is not one JSON line: %v\n%s", err, out.String())
	}
	if !sum.OK || len(sum.Data.ConnectedUsers) != 1 || sum.Data.ConnectedUsers[0].UserID != users[0].UserID {
		t.Errorf("the playground showed %+v, want the demo user's connection %s", sum.Data, users[0].UserID)
	}
	if sum.DocTitle != "connectedUsers" {
		t.Errorf("the docs explorer shows %q, want connectedUsers", sum.DocTitle)
	}
	if len(sum.ConsoleErrors) > 0 {
		t.Errorf("the page logged errors: %q", sum.ConsoleErrors)
	}
}

// TestPlaygroundServedFromBinary checks the page's policy (its own origin only, no inline
// script) and the bundle's caching, through the real server.
func TestPlaygroundServedFromBinary(t *testing.T) {
	g := startGateway(t)
	resp, page := httpGet(t, g.url+"/", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/: %d", resp.StatusCode)
	}
	csp := map[string][]string{}
	for d := range strings.SplitSeq(resp.Header.Get("Content-Security-Policy"), ";") {
		if f := strings.Fields(d); len(f) > 0 {
			csp[f[0]] = f[1:]
		}
	}
	for d, sources := range csp {
		for _, s := range sources {
			if strings.Contains(s, "//") || s == "https:" || s == "http:" || s == "*" || strings.Contains(s, "cdn") {
				t.Errorf("%s allows %s: the playground must load nothing from elsewhere", d, s)
			}
		}
	}
	if got := strings.Join(csp["script-src"], " "); got != "'self'" {
		t.Errorf("script-src = %q, want 'self' alone (no CDN, no 'unsafe-inline')", got)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("page Cache-Control = %q: it may carry a token, so no-store", cc)
	}

	links := regexp.MustCompile(`(?:src|href)="(/playground/assets/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(links) != 2 {
		t.Fatalf("want a script and a stylesheet under /playground/assets/, found %v in\n%s", links, page)
	}
	for _, l := range links {
		resp, body := httpGet(t, g.url+l[1], nil)
		if resp.StatusCode != http.StatusOK || len(body) < 10_000 {
			t.Errorf("%s: %d, %d bytes", l[1], resp.StatusCode, len(body))
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("%s: Cache-Control = %q, want a year, immutable", l[1], cc)
		}
		want := map[string]string{".js": "text/javascript", ".css": "text/css"}[l[1][strings.LastIndex(l[1], "."):]]
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, want) || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: Content-Type %q, nosniff %q", l[1], ct, resp.Header.Get("X-Content-Type-Options"))
		}
		// Compressed for browsers that ask, and the same bytes once unpacked.
		zresp, zbody := httpGet(t, g.url+l[1], http.Header{"Accept-Encoding": {"gzip, br"}})
		if zresp.Header.Get("Content-Encoding") != "gzip" || len(zbody) >= len(body) {
			t.Errorf("%s: Content-Encoding %q, %d bytes of %d", l[1], zresp.Header.Get("Content-Encoding"), len(zbody), len(body))
		} else if zr, err := gzip.NewReader(strings.NewReader(zbody)); err != nil {
			t.Errorf("%s: %v", l[1], err)
		} else if plain, err := io.ReadAll(zr); err != nil || string(plain) != body {
			t.Errorf("%s: the gzip encoding does not unpack to the file (%v)", l[1], err)
		}
	}
	if resp, _ := httpGet(t, g.url+"/playground/assets/nope.js", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown asset answered %d", resp.StatusCode)
	}

	off := startGateway(t, withEnv("PLAYGROUND", "false"))
	if resp, _ := httpGet(t, off.url+links[0][1], nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("PLAYGROUND=false still serves the bundle: %d", resp.StatusCode)
	}
}

// httpGet fetches url with header as given (no transparent decompression) and returns the
// response and its body.
func httpGet(t *testing.T, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	if req.Header == nil {
		req.Header = http.Header{}
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}
