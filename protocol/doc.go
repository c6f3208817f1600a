// Package protocol defines the wsauth wire protocol v1: frame types, close
// codes, and a strict JSON codec for frames.
//
// Every frame is a UTF-8 text WebSocket frame holding one JSON object with a
// string "type". Client to server:
//
//	{"type":"auth","token":"<compact JWS>"}
//	{"type":"message","id":"<optional, at most 64 bytes>","data":<any JSON>}
//
// Server to client:
//
//	{"type":"auth_ok","session":"<opaque id>","sub":"<subject>","exp":<unix s>}
//	{"type":"reauth_required","exp":<unix s>,"deadline":<unix s>}
//	{"type":"message","data":<any JSON>}
//	{"type":"error","code":<int>,"message":"<text>","ref":"<client message id>"}
//
// # Strictness
//
// The decoders are the server's security boundary, so they reject (with an
// error wrapping [ErrMalformed]) anything a lenient parser might read
// differently from another one: invalid UTF-8, anything but a single JSON
// object, duplicate keys (compared after unescaping, so "t\u0079pe" duplicates
// "type"), unknown or mistyped "type", and missing or mistyped fields. Keys are
// case-sensitive; unknown fields, including another frame type's fields, are
// ignored but must be valid JSON. JSON validity is exactly that of
// [encoding/json.Valid] (nesting depth at most 10000), plus valid UTF-8.
// Escaped lone surrogates in decoded strings become U+FFFD, as in
// encoding/json. Error texts are fixed: they never contain input, so a token
// cannot leak into a log through them.
//
// The encoders (AppendClient, AppendServer) append a frame to a caller's buffer, allocating
// nothing when it has room, so a session can reuse one buffer for every
// frame. They trust their data argument to be one JSON value; check untrusted
// data with [ValidData] first. Strings are escaped so that every frame is
// valid UTF-8 and safe to embed in JavaScript (U+2028 and U+2029 are
// escaped); invalid UTF-8 in a string argument becomes U+FFFD.
//
// # Goroutines
//
// The package does no I/O and keeps no state: every function is safe for
// concurrent use. DecodeServer's frames never alias the input buffer, so a
// client may reuse it at once; DecodeClient's Data does (see DecodeClient).
//
// # Example
//
//	f, err := protocol.DecodeClient(payload)
//	if err != nil {
//		// close with protocol.CloseMalformed; never log payload
//	}
//	if f.Type == protocol.TypeMessage {
//		out = protocol.AppendServer(out[:0], protocol.ServerFrame{Type: protocol.TypeMessage, Data: f.Data})
//	}
package protocol
