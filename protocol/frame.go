package protocol

import (
	"encoding/json"
	"errors"
)

// Subprotocol is the WebSocket subprotocol name of wire protocol v1. Clients
// offer it in Sec-WebSocket-Protocol and the server selects it.
const Subprotocol = "wsauth.v1"

// MaxMessageIDLen is the longest client message id, in bytes of the decoded
// string. Longer ids make a message frame malformed.
const MaxMessageIDLen = 64

// Frame types: the value of the "type" field. Values are case-sensitive.
const (
	TypeAuth           = "auth"            // client: present a token
	TypeMessage        = "message"         // client and server: application data
	TypeAuthOK         = "auth_ok"         // server: the token was accepted
	TypeReauthRequired = "reauth_required" // server: send a fresh token before deadline
	TypeError          = "error"           // server: a message was refused
)

// ErrMalformed is the sentinel for every frame the decoders reject. The
// returned errors wrap it with a short fixed description ("duplicate key",
// "unknown type"); they never contain any of the input.
var ErrMalformed = errors.New("protocol: malformed frame")

// ClientFrame is a decoded client-to-server frame.
type ClientFrame struct {
	Type   string          // TypeAuth or TypeMessage
	Token  string          // auth: the token; message: its own token, if it carries one
	Resume *Position       // auth: the last position the client received, if it asks to resume
	ID     string          // message: optional client id, echoed as "ref" in error frames
	Data   json.RawMessage // message: the data value (DecodeClient: aliases its input)
}

// ServerFrame is a decoded server-to-client frame (used by clients).
type ServerFrame struct {
	Type     string          // TypeAuthOK, TypeReauthRequired, TypeMessage or TypeError
	Session  string          // auth_ok
	Subject  string          // auth_ok ("sub")
	Exp      int64           // auth_ok, reauth_required: token expiry, unix seconds
	Stream   bool            // auth_ok: the server keeps the user's stream; Epoch and Seq are where the session starts
	Epoch    string          // auth_ok (with Stream), message (with Seq): the epoch of the user's stream
	Seq      uint64          // auth_ok (with Stream): the position the session starts after; message: its position, 0 if it has none
	Resume   string          // auth_ok: ResumeOK or ResumeLost if the auth asked to resume, else ""
	Deadline int64           // reauth_required: unix seconds by which a fresh token must arrive
	Data     json.RawMessage // message (a copy)
	Code     ErrorCode       // error
	Message  string          // error
	Ref      string          // error: the id of the refused client message, if it had one
}

// ErrorCode is the code of an error frame: the refusal of one client frame,
// after which the connection stays open. Applications choose their own codes
// (preferably 4000-4399) for the messages they refuse; the server itself
// uses the ones below. Error codes and close codes are separate vocabularies
// that share numbers where the meaning is alike.
type ErrorCode int

// The error codes the server itself sends. docs/protocol.md, section 2,
// says what a client should do after each.
const (
	// ErrorReauthRequired refuses a message sent while the session's token
	// is expired (ref names it: reauthenticate, then send it again), and a
	// reauthentication whose token failed verification (no ref; the message
	// names the failed check): the session keeps its current token until
	// exp and grace run out.
	ErrorReauthRequired ErrorCode = 4401
	// ErrorNotAccepted refuses every message of a server without a message
	// handler.
	ErrorNotAccepted ErrorCode = 4405
	// ErrorTooManyRequests refuses an auth frame sent less than a second
	// after the session's previous one (other than the answer to a
	// reauth_required): it was not verified.
	ErrorTooManyRequests ErrorCode = 4429
	// ErrorForbidden refuses a message whose own token (on a server that
	// wants one per message) belongs to another user than the session's,
	// or is revoked.
	ErrorForbidden ErrorCode = 4403
	// ErrorInternal refuses a message whose handler failed.
	ErrorInternal ErrorCode = 4500
)

// Position is a message's place in its user's stream: a server that keeps
// streams numbers the messages it sends to a user 1, 2, 3... (Seq, without
// gaps) within an Epoch, which changes only when the stream's history is
// lost. A client that presents the last Position it received in its auth
// frame gets every message after it (docs/protocol.md, "Resume").
type Position struct {
	Epoch string // at most 64 bytes
	Seq   uint64
}

// The answers of auth_ok to an auth frame that asked to resume.
const (
	// ResumeOK: every message after the client's position follows auth_ok,
	// in order, before any later one.
	ResumeOK = "ok"
	// ResumeLost: the server cannot tell what the client missed (the
	// position is older than what is kept, from another epoch, or ahead of
	// the stream). Messages continue from the next one sent; the client
	// should resynchronise from the application.
	ResumeLost = "lost"
)
