package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	chromiumPath   = "/usr/bin/chromium"
	browserDir     = "internal/demo/testdata/browser"
	browserTimeout = 60 * time.Second
)

// browserSummary is the line demo-loop.mjs prints when the loop went through.
type browserSummary struct {
	OK         bool      `json:"ok"`
	SessionID  string    `json:"sessionId"`
	WidgetURL  string    `json:"widgetUrl"`
	Redirect   string    `json:"redirect"`
	Connection terraUser `json:"connection"`
	Browser    string    `json:"browser"`
	ElapsedMS  int       `json:"elapsedMs"`
}

// TestDemoInBrowser walks the demo loop in Chromium: the widget in a new tab, Oura, Allow,
// the return page, then connectedUsers from the app's page. It needs Chromium and the
// browser driver installed; it skips without them locally and fails without them in CI.
func TestDemoInBrowser(t *testing.T) {
	node := requireBrowser(t)

	base, bearer, logs := startDemo(t)
	// Widget URLs are built from PUBLIC_URL (http://localhost:<port>); the app page must be
	// on that same origin for its fetch('/graphql') and the redirect to line up.
	public := strings.Replace(base, "127.0.0.1", "localhost", 1)

	shot := filepath.Join(t.TempDir(), "demo-connected.png")
	if dir := os.Getenv("TERRAGATE_SCREENSHOT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		abs, err := filepath.Abs(filepath.Join(dir, "demo-connected.png"))
		if err != nil {
			t.Fatal(err)
		}
		shot = abs
	}

	bctx, bcancel := context.WithTimeout(context.Background(), browserTimeout)
	defer bcancel()
	cmd := exec.CommandContext(bctx, node, "demo-loop.mjs")
	cmd.Dir = browserDir
	// Through the environment rather than argv: the token stays out of process listings.
	cmd.Env = append(os.Environ(), "DEMO_BASE_URL="+public, "DEMO_TOKEN="+bearer, "DEMO_SCREENSHOT="+shot)
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	t.Logf("demo-loop.mjs took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("demo-loop.mjs: %v\nstderr:\n%s\nstdout:\n%s\ngateway logs:\n%s", err, errOut.String(), out.String(), logs.String())
	}

	var sum browserSummary
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &sum); err != nil {
		t.Fatalf("summary is not one JSON line: %v\n%s", err, out.String())
	}
	t.Logf("summary: %s", bytes.TrimSpace(out.Bytes()))
	if !sum.OK || sum.Connection.Provider != "OURA" || sum.Connection.Status != "CONNECTED" || sum.Connection.UserID == "" {
		t.Errorf("summary = %+v", sum)
	}
	if !strings.HasPrefix(sum.WidgetURL, public+"/terra/widget/session/") {
		t.Errorf("widget url %s is not on the demo's own origin", sum.WidgetURL)
	}
	if !strings.HasPrefix(sum.Redirect, "/demo/return?") || !strings.Contains(sum.Redirect, "provider=OURA") || !strings.Contains(sum.Redirect, "status=COMPLETED") {
		t.Errorf("redirect = %s", sum.Redirect)
	}

	// The gateway agrees, asked directly rather than through the browser.
	g := &gateway{t: t, url: base, seen: &syncBuffer{}}
	users := g.connectedUsers(bearer, false)
	if len(users) != 1 || users[0].UserID != sum.Connection.UserID || users[0].Status != "CONNECTED" ||
		users[0].ReferenceID == nil || *users[0].ReferenceID != "demo-user" {
		t.Errorf("connectedUsers = %+v, browser saw %+v", users, sum.Connection)
	}

	checkScreenshot(t, shot)
	t.Logf("screenshot: %s", shot)
}

// requireBrowser returns the node binary, or skips (locally) or fails (in CI) naming what is
// missing and how to install it.
func requireBrowser(t *testing.T) string {
	t.Helper()
	var missing []string
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node on PATH (apt-get install -y nodejs npm)")
	}
	if fi, err := os.Stat(chromiumPath); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		missing = append(missing, chromiumPath+" (apt-get update && apt-get install -y chromium)")
	}
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core", "package.json")); err != nil {
		missing = append(missing, "playwright-core (npm ci --prefix "+browserDir+")")
	}
	if len(missing) == 0 {
		return node
	}
	msg := "the browser test needs " + strings.Join(missing, ", ") + "; .ci/run installs Chromium and playwright-core"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// checkScreenshot makes sure the file is a PNG of a rendered page, not an empty or blank one.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", path, err)
	}
	b := img.Bounds()
	if b.Dx() < 320 || b.Dy() < 240 || fi.Size() < 4<<10 {
		t.Errorf("screenshot is %dx%d, %d bytes: too small to show the page", b.Dx(), b.Dy(), fi.Size())
	}
	// Text on a page gives many shades (anti-aliasing); a blank page gives one or two.
	colours := map[[4]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y && len(colours) <= 16; y += 3 {
		for x := b.Min.X; x < b.Max.X && len(colours) <= 16; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			colours[[4]uint32{r, g, bl, a}] = true
		}
	}
	if len(colours) <= 16 {
		t.Errorf("screenshot has only %d colours: the page looks blank", len(colours))
	}
}
