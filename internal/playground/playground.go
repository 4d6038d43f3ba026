// Package playground serves GraphiQL, with its explorer plugin, from the binary itself: the
// page and a bundled script and stylesheet on terragate's own origin, so the playground
// works offline and its page can forbid every other origin.
//
// The bundle in assets/ is built from web/ (pinned in web/package-lock.json) by
// `go generate ./...` and committed, like gqlgen's output.
package playground

//go:generate node web/build.mjs

import (
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
)

// AssetsPath is where Assets is mounted; the page links to its files there.
const AssetsPath = "/playground/assets/"

//go:embed assets
var embedded embed.FS

// asset is one bundled file, with its gzip encoding made once on first use (the script is
// about a megabyte and a quarter of that compressed).
type asset struct {
	body        []byte
	contentType string
	gzipped     func() []byte
}

// assets are the bundle's files by name, and the names of its one script and stylesheet.
var assets, script, stylesheet = load()

func load() (map[string]*asset, string, string) {
	files, err := fs.ReadDir(embedded, "assets")
	if err != nil {
		panic(err)
	}
	out := map[string]*asset{}
	var js, css string
	for _, f := range files {
		body, err := embedded.ReadFile("assets/" + f.Name())
		if err != nil {
			panic(err)
		}
		out[f.Name()] = &asset{
			body:        body,
			contentType: mime.TypeByExtension(path.Ext(f.Name())),
			gzipped:     sync.OnceValue(func() []byte { return compress(body) }),
		}
		switch path.Ext(f.Name()) {
		case ".js":
			js = f.Name()
		case ".css":
			css = f.Name()
		}
	}
	if js == "" || css == "" {
		// Only a broken checkout gets here; go generate ./... rebuilds the bundle.
		panic("playground: the bundle in assets/ is missing; run go generate ./...")
	}
	return out, js, css
}

func compress(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// Assets serves the bundle under AssetsPath. File names carry a hash of their content, so a
// browser may keep each one for good: a new build has new names.
func Assets() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[strings.TrimPrefix(r.URL.Path, AssetsPath)]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Vary", "Accept-Encoding")
		body := a.body
		if acceptsGzip(r) {
			body = a.gzipped()
			h.Set("Content-Encoding", "gzip")
		}
		h.Set("Content-Length", fmt.Sprint(len(body)))
		if r.Method != http.MethodHead {
			w.Write(body)
		}
	})
}

func acceptsGzip(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get("Accept-Encoding"), ",") {
		coding, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if q, err := strconv.ParseFloat(v, 64); err == nil && q == 0 {
				return false
			}
		}
		return true
	}
	return false
}

// config is what the bundled script reads from the page's JSON data block.
type config struct {
	Endpoint      string            `json:"endpoint"`
	Headers       map[string]string `json:"headers"`
	StoragePrefix string            `json:"storagePrefix"`
}

// The page loads nothing but the bundle, and passes its settings as data, not code: its
// policy allows scripts from this origin only.
var page = template.Must(template.New("playground").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>terragate GraphQL playground</title>
<link rel="stylesheet" href="{{.Stylesheet}}">
<script type="application/json" id="playground-config">{{.Config}}</script>
<script src="{{.Script}}" defer></script>
</head>
<body>
<div id="graphiql"><div class="loading">Loading…</div></div>
</body>
</html>
`))

// Page serves the GraphiQL page for endpoint, a path on this origin. headers are shown
// pre-filled in its header editor (the demo puts a ready bearer token there).
func Page(endpoint string, headers map[string]string) http.Handler {
	var buf bytes.Buffer
	err := page.Execute(&buf, map[string]any{
		"Stylesheet": AssetsPath + stylesheet,
		"Script":     AssetsPath + script,
		"Config":     config{Endpoint: endpoint, Headers: headers, StoragePrefix: "terragate:"},
	})
	if err != nil {
		panic(err) // the template and its data are fixed: this is a programming error
	}
	body := buf.Bytes()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// The page may carry a bearer token (the demo's); no cache should keep it.
		w.Header().Set("Cache-Control", "no-store")
		w.Write(body)
	})
}
