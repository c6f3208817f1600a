// Package jsclient embeds wsauth.js, the dependency-free browser client of
// the wsauth wire protocol, so that Go servers can serve it:
//
//	mux.HandleFunc("GET /wsauth.js", func(w http.ResponseWriter, r *http.Request) {
//		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
//		w.Write(jsclient.Source)
//	})
//
// The JavaScript package itself (npm @wsauth/client) lives in this
// directory; see README.md.
package jsclient

import _ "embed"

// Source is the ES module wsauth.js.
//
//go:embed wsauth.js
var Source []byte
