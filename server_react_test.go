package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// reactAppDir is the React example; its e2e/connect.mjs drives the built app in Chromium.
const reactAppDir = "examples/react-web"

// reactSummary is the line connect.mjs prints when the loop went through.
type reactSummary struct {
	OK         bool   `json:"ok"`
	WidgetURL  string `json:"widgetUrl"`
	ReturnPath string `json:"returnPath"`
	ReturnTab  string `json:"returnTab"`
	Connection struct {
		UserID   string `json:"userId"`
		Provider string `json:"provider"`
		Status   string `json:"status"`
	} `json:"connection"`
	LiveEvents []struct {
		Type     string `json:"type"`
		UserID   string `json:"userId"`
		Provider string `json:"provider"`
	} `json:"liveEvents"`
	Browser   string `json:"browser"`
	ElapsedMS int    `json:"elapsedMs"`
}

// TestReactAppInBrowser runs the React example's production build against the demo
// gateway in Chromium: sign in, the widget in a new tab, Oura, Allow, the connection shown
// live in the first tab without a reload, then Disconnect. It needs Chromium, the example's
// node_modules and its build; it skips without them locally and fails without them in CI.
func TestReactAppInBrowser(t *testing.T) {
	runReactApp(t, "dist", nil)
}

// TestReactAppTrustedDocuments runs the example's trusted build (npm run build:trusted),
// which sends every operation by its documentId, against a demo gateway that enforces the
// manifest that build emitted: the whole loop works, subscriptions included, and a
// hand-written query is refused with PERSISTED_QUERY_NOT_FOUND.
func TestReactAppTrustedDocuments(t *testing.T) {
	manifest := filepath.Join(reactAppDir, "src", "gql", "persisted-documents.json")
	base, bearer := runReactApp(t, "dist-trusted", map[string]string{"TRUSTED_DOCUMENTS": manifest})
	g := &gateway{t: t, url: base, seen: &syncBuffer{}}
	if r := g.gql(bearer, `{ connectedUsers { userId } }`, nil); r.code() != "PERSISTED_QUERY_NOT_FOUND" {
		t.Errorf("a hand-written query: %+v, want PERSISTED_QUERY_NOT_FOUND", r)
	}
	// The app's own ConnectedUsers, by its id: nothing is left after Disconnect.
	raw, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	var docs map[string]string
	if err := json.Unmarshal(raw, &docs); err != nil {
		t.Fatal(err)
	}
	var id string
	for k, doc := range docs {
		if strings.Contains(doc, "query ConnectedUsers ") {
			id = k
		}
	}
	_, r := g.postJSON(bearer, map[string]any{"documentId": id})
	if len(r.Errors) > 0 || string(r.Data) != `{"connectedUsers":[]}` {
		t.Errorf("the app's ConnectedUsers by documentId %q after Disconnect: %s %+v", id, r.Data, r.Errors)
	}
}

// runReactApp serves the example's build in dist and drives it with e2e/connect.mjs against
// a demo gateway started with env besides the app's origins, then checks what the browser
// saw against the gateway. It returns the gateway's address and the demo user's token.
func runReactApp(t *testing.T, dist string, env map[string]string) (base, bearer string) {
	t.Helper()
	node := requireReactApp(t, dist)

	app := serveSPA(t, filepath.Join(reactAppDir, dist))
	base, bearer, logs := startDemoForApp(t, app, env)
	// Widget links are built from PUBLIC_URL, http://localhost:<port>; the browser uses the
	// same name for the gateway so that the whole loop stays on two localhost origins.
	public := strings.Replace(base, "127.0.0.1", "localhost", 1)

	shot := filepath.Join(t.TempDir(), "react-connected.png")
	if dir := os.Getenv("TERRAGATE_SCREENSHOT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		abs, err := filepath.Abs(filepath.Join(dir, "react-connected-"+dist+".png"))
		if err != nil {
			t.Fatal(err)
		}
		shot = abs
	}

	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "e2e/connect.mjs")
	cmd.Dir = reactAppDir
	cmd.Env = append(os.Environ(), "APP_URL="+app, "GATEWAY_URL="+public, "SCREENSHOT="+shot)
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	t.Logf("connect.mjs took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("connect.mjs: %v\nstderr:\n%s\nstdout:\n%s\ngateway logs:\n%s", err, errOut.String(), out.String(), logs.String())
	}

	var sum reactSummary
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &sum); err != nil {
		t.Fatalf("summary is not one JSON line: %v\n%s", err, out.String())
	}
	t.Logf("summary: %s", bytes.TrimSpace(out.Bytes()))
	if !sum.OK || sum.Connection.Provider != "OURA" || sum.Connection.Status != "CONNECTED" || sum.Connection.UserID == "" {
		t.Errorf("summary = %+v", sum)
	}
	if !strings.HasPrefix(sum.WidgetURL, public+"/") {
		t.Errorf("widget url %s is not on the gateway's origin %s", sum.WidgetURL, public)
	}
	if !strings.HasPrefix(sum.ReturnPath, "/?returned=1") {
		t.Errorf("the widget returned to %s, not the app's return page", sum.ReturnPath)
	}

	// The gateway agrees, asked directly: the connection the browser saw is now disconnected.
	// (listUsers is the test's own document: with trusted documents enforced it is refused,
	// and the check is left to the browser's own view.)
	if env["TRUSTED_DOCUMENTS"] == "" {
		g := &gateway{t: t, url: base, seen: &syncBuffer{}}
		if users := g.connectedUsers(bearer, false); len(users) != 0 {
			t.Errorf("connections left after Disconnect: %+v", users)
		}
		all := g.connectedUsers(bearer, true)
		if len(all) != 1 || all[0].UserID != sum.Connection.UserID || all[0].Status != "DISCONNECTED" {
			t.Errorf("connectedUsers(includeInactive) = %+v, browser saw %+v", all, sum.Connection)
		}
	}

	checkScreenshot(t, shot)
	t.Logf("screenshot: %s", shot)
	return base, bearer
}

// requireReactApp returns the node binary, or skips (locally) or fails (in CI) naming what
// is missing and how to get it.
func requireReactApp(t *testing.T, dist string) string {
	t.Helper()
	var missing []string
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node on PATH (apt-get install -y nodejs npm)")
	}
	if fi, err := os.Stat(chromiumPath); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		missing = append(missing, chromiumPath+" (apt-get update && apt-get install -y chromium)")
	}
	if _, err := os.Stat(filepath.Join(reactAppDir, "node_modules", "playwright-core", "package.json")); err != nil {
		missing = append(missing, "the example's packages (npm ci --prefix "+reactAppDir+")")
	}
	if _, err := os.Stat(filepath.Join(reactAppDir, dist, "index.html")); err != nil {
		script := "build"
		if dist == "dist-trusted" {
			script = "build:trusted"
		}
		missing = append(missing, "the example's build (npm run "+script+" --prefix "+reactAppDir+")")
	}
	if len(missing) == 0 {
		return node
	}
	msg := "the React example's browser test needs " + strings.Join(missing, ", ") + "; .ci/run installs and builds them"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// serveSPA serves a built single-page app on loopback and returns its origin, named
// localhost. Paths that are not files get index.html, as an app's host would do.
func serveSPA(t *testing.T, dir string) string {
	t.Helper()
	root := os.DirFS(dir)
	files := http.FileServerFS(root)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if fi, err := fs.Stat(root, name); name != "" && (err != nil || fi.IsDir()) {
			r = r.Clone(r.Context())
			r.URL.Path = "/"
		}
		files.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// startDemoForApp runs `terragate -demo` on loopback like startDemo, with the app's origin
// allowed for CORS, the WebSocket and widget redirects, and extra settings. It returns the gateway's address,
// the demo user's token it printed, and its logs.
func startDemoForApp(t *testing.T, appOrigin string, extra map[string]string) (base, bearer string, logs *syncBuffer) {
	t.Helper()
	stdout := &syncBuffer{}
	logs = &syncBuffer{}
	env := map[string]string{
		"DATABASE_URL":          "sqlite:" + filepath.Join(t.TempDir(), "demo.db"),
		"CORS_ALLOWED_ORIGINS":  appOrigin,
		"ALLOWED_REDIRECT_URLS": appOrigin + "/",
		"LOG_LEVEL":             "debug",
	}
	maps.Copy(env, extra)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-demo", "-addr", "127.0.0.1:0"}, func(k string) string { return env[k] }, stdout, logs)
	}()
	base = waitListening(t, stdout, done)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	m := regexp.MustCompile(`Bearer token:\s+(\S+)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no token printed:\n%s", stdout.String())
	}
	return base, m[1], logs
}
