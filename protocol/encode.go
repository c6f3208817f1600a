package protocol

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// The encoders write the envelope by hand: a frame costs one append into the
// caller's buffer and no allocation, and the field order is fixed, which
// keeps frames byte-for-byte predictable in tests and captures.

// AppendAuth appends {"type":"auth","token":...} to dst and returns it.
func AppendAuth(dst []byte, token string) []byte {
	dst = append(dst, `{"type":"auth","token":`...)
	dst = appendString(dst, token)
	return append(dst, '}')
}

// AppendClientMessage appends {"type":"message","id":...,"data":...} to dst
// and returns it. The "id" member is omitted when id is empty; an id longer
// than MaxMessageIDLen makes a frame the server rejects. data must be one JSON
// value (see ValidData); empty data is encoded as null.
func AppendClientMessage(dst []byte, id string, data json.RawMessage) []byte {
	dst = append(dst, `{"type":"message",`...)
	if id != "" {
		dst = append(dst, `"id":`...)
		dst = appendString(dst, id)
		dst = append(dst, ',')
	}
	dst = append(dst, `"data":`...)
	dst = appendData(dst, data)
	return append(dst, '}')
}

// AppendAuthOK appends {"type":"auth_ok","session":...,"sub":...,"exp":...}
// to dst and returns it. exp is in unix seconds.
func AppendAuthOK(dst []byte, session, subject string, exp int64) []byte {
	dst = append(dst, `{"type":"auth_ok","session":`...)
	dst = appendString(dst, session)
	dst = append(dst, `,"sub":`...)
	dst = appendString(dst, subject)
	dst = append(dst, `,"exp":`...)
	dst = strconv.AppendInt(dst, exp, 10)
	return append(dst, '}')
}

// AppendReauthRequired appends
// {"type":"reauth_required","exp":...,"deadline":...} to dst and returns it.
// Both times are in unix seconds.
func AppendReauthRequired(dst []byte, exp, deadline int64) []byte {
	dst = append(dst, `{"type":"reauth_required","exp":`...)
	dst = strconv.AppendInt(dst, exp, 10)
	dst = append(dst, `,"deadline":`...)
	dst = strconv.AppendInt(dst, deadline, 10)
	return append(dst, '}')
}

// AppendMessage appends the server frame {"type":"message","data":...} to
// dst and returns it. data must be one JSON value (see ValidData); empty data
// is encoded as null.
func AppendMessage(dst []byte, data json.RawMessage) []byte {
	dst = append(dst, `{"type":"message","data":`...)
	dst = appendData(dst, data)
	return append(dst, '}')
}

// AppendError appends {"type":"error","code":...,"message":...,"ref":...} to
// dst and returns it. The "ref" member is omitted when ref is empty. message
// is fixed server text: never put a token or other client input in it.
func AppendError(dst []byte, code int, message, ref string) []byte {
	dst = append(dst, `{"type":"error","code":`...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, message)
	if ref != "" {
		dst = append(dst, `,"ref":`...)
		dst = appendString(dst, ref)
	}
	return append(dst, '}')
}

// ValidData reports whether b is valid UTF-8 holding exactly one JSON value,
// optionally surrounded by JSON whitespace: what AppendMessage and
// AppendClientMessage expect. It is json.Valid plus the UTF-8 check (which
// json.Valid lacks), with nesting limited so that the value still fits a frame.
func ValidData(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	i := skipSpace(b, 0)
	// Depth 1: the value sits inside the frame's object.
	i, err := scanValue(b, i, 1)
	return err == nil && skipSpace(b, i) == len(b)
}

func appendData(dst []byte, data json.RawMessage) []byte {
	if len(data) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, data...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. It escapes '"', '\\', control
// characters (as \u00XX) and U+2028 and U+2029, which JavaScript source does
// not allow unescaped in strings. Invalid UTF-8 becomes U+FFFD, as in
// encoding/json, so every frame is valid UTF-8.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, to be copied as is
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
