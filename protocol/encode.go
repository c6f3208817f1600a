package protocol

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// The encoders write the envelope by hand: a frame costs one append into the
// caller's buffer and no allocation, and the field order is fixed, which
// keeps frames byte-for-byte predictable in tests and captures.

// AppendClient appends the client-to-server frame f to dst and returns it:
//
//	{"type":"auth","token":...,"resume":{"epoch":...,"seq":...}}
//	{"type":"message","id":...,"token":...,"data":...}
//
// "resume" is omitted when f.Resume is nil, "id" and a message's "token"
// when empty; an id longer than
// MaxMessageIDLen makes a frame the server rejects. f.Data must be one JSON
// value (see ValidData); empty data is encoded as null. Fields that f.Type
// does not use are ignored. AppendClient panics if f.Type is not TypeAuth
// or TypeMessage.
func AppendClient(dst []byte, f ClientFrame) []byte {
	switch f.Type {
	case TypeAuth:
		dst = append(dst, `{"type":"auth","token":`...)
		dst = appendString(dst, f.Token)
		if f.Resume != nil {
			dst = append(dst, `,"resume":{"epoch":`...)
			dst = appendString(dst, f.Resume.Epoch)
			dst = append(dst, `,"seq":`...)
			dst = strconv.AppendUint(dst, f.Resume.Seq, 10)
			dst = append(dst, '}')
		}
	case TypeMessage:
		dst = append(dst, `{"type":"message",`...)
		if f.ID != "" {
			dst = append(dst, `"id":`...)
			dst = appendString(dst, f.ID)
			dst = append(dst, ',')
		}
		if f.Token != "" {
			dst = append(dst, `"token":`...)
			dst = appendString(dst, f.Token)
			dst = append(dst, ',')
		}
		dst = append(dst, `"data":`...)
		dst = appendData(dst, f.Data)
	default:
		panic("protocol: AppendClient of a frame of type " + strconv.Quote(f.Type))
	}
	return append(dst, '}')
}

// AppendServer appends the server-to-client frame f to dst and returns it:
//
//	{"type":"auth_ok","session":...,"sub":...,"exp":...,"epoch":...,"seq":...,"resume":...}
//	{"type":"reauth_required","exp":...,"deadline":...}
//	{"type":"message","epoch":...,"seq":...,"data":...}
//	{"type":"error","code":...,"message":...,"ref":...}
//
// Times are unix seconds. f.Data must be one JSON value (see ValidData);
// empty data is encoded as null. An auth_ok has "epoch" and "seq" when
// f.Stream is set, and "resume" when f.Resume is not empty; a message has
// "epoch" and "seq" when f.Seq is not 0; an error has "ref" when f.Ref is
// not empty. An error's message is fixed server text: never put a token or
// other client input in it. Fields that f.Type does not use are ignored.
// AppendServer panics if f.Type is not one of the four server types.
func AppendServer(dst []byte, f ServerFrame) []byte {
	switch f.Type {
	case TypeMessage:
		dst = append(dst, `{"type":"message",`...)
		if f.Seq != 0 {
			dst = append(dst, `"epoch":`...)
			dst = appendString(dst, f.Epoch)
			dst = append(dst, `,"seq":`...)
			dst = strconv.AppendUint(dst, f.Seq, 10)
			dst = append(dst, ',')
		}
		dst = append(dst, `"data":`...)
		dst = appendData(dst, f.Data)
	case TypeAuthOK:
		dst = append(dst, `{"type":"auth_ok","session":`...)
		dst = appendString(dst, f.Session)
		dst = append(dst, `,"sub":`...)
		dst = appendString(dst, f.Subject)
		dst = append(dst, `,"exp":`...)
		dst = strconv.AppendInt(dst, f.Exp, 10)
		if f.Stream {
			dst = append(dst, `,"epoch":`...)
			dst = appendString(dst, f.Epoch)
			dst = append(dst, `,"seq":`...)
			dst = strconv.AppendUint(dst, f.Seq, 10)
		}
		if f.Resume != "" {
			dst = append(dst, `,"resume":`...)
			dst = appendString(dst, f.Resume)
		}
	case TypeReauthRequired:
		dst = append(dst, `{"type":"reauth_required","exp":`...)
		dst = strconv.AppendInt(dst, f.Exp, 10)
		dst = append(dst, `,"deadline":`...)
		dst = strconv.AppendInt(dst, f.Deadline, 10)
	case TypeError:
		dst = append(dst, `{"type":"error","code":`...)
		dst = strconv.AppendInt(dst, int64(f.Code), 10)
		dst = append(dst, `,"message":`...)
		dst = appendString(dst, f.Message)
		if f.Ref != "" {
			dst = append(dst, `,"ref":`...)
			dst = appendString(dst, f.Ref)
		}
	default:
		panic("protocol: AppendServer of a frame of type " + strconv.Quote(f.Type))
	}
	return append(dst, '}')
}

// ValidData reports whether b is valid UTF-8 holding exactly one JSON value,
// optionally surrounded by JSON whitespace: what the encoders expect of a
// frame's data. It is json.Valid plus the UTF-8 check (which
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
