package main

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"time"

	jsclient "github.com/wsauth/wsauth/clients/js"
)

// static holds the chat page and the status page.
//
//go:embed static
var static embed.FS

// pageCSP keeps the page to its own scripts, styles and socket.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// mountStatic serves the chat page at /, the status page at /status and
// the browser client at /wsauth.js.
func mountStatic(mux *http.ServeMux) {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	fileServer := http.FileServerFS(files)
	// "/" without a method, so that it does not conflict with /token.
	mux.Handle("/", secureHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		fileServer.ServeHTTP(w, r)
	})))
	mux.Handle("GET /status", secureHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, files, "status.html")
	})))
	modTime := time.Now()
	mux.Handle("GET /wsauth.js", secureHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeContent(w, r, "wsauth.js", modTime, bytes.NewReader(jsclient.Source))
	})))
}

func secureHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("Content-Security-Policy", pageCSP)
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("Referrer-Policy", "no-referrer")
		hdr.Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}
