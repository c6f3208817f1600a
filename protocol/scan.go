package protocol

import (
	"bytes"
	"encoding/binary"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is the deepest nesting of arrays and objects a frame may have,
// counting the frame's own object as 1. It is encoding/json's limit, so that
// a frame is valid JSON here exactly when json.Valid says so.
const maxDepth = 10000

// isSpace reports whether c is JSON whitespace (RFC 8259 section 2).
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// bitStack records, per nesting level, whether the container is an object.
// The first 64 levels need no allocation.
type bitStack struct {
	lo uint64
	hi []uint64
}

func (s *bitStack) set(level int, object bool) {
	w, bit := &s.lo, uint64(1)<<(level%64)
	if level >= 64 {
		n := level/64 - 1
		for len(s.hi) <= n {
			s.hi = append(s.hi, 0)
		}
		w = &s.hi[n]
	}
	if object {
		*w |= bit
	} else {
		*w &^= bit
	}
}

func (s *bitStack) object(level int) bool {
	w := s.lo
	if level >= 64 {
		w = s.hi[level/64-1]
	}
	return w&(uint64(1)<<(level%64)) != 0
}

// scanValue validates the JSON value starting at b[i] (no leading
// whitespace) and returns the index just past it. depth is the nesting depth
// of the enclosing container (0 for a top-level value). It does not check
// UTF-8: callers validate the whole buffer first. It is iterative, so hostile
// nesting cannot grow the goroutine stack.
func scanValue(b []byte, i, depth int) (int, error) {
	var kinds bitStack
	base := depth
	for {
		// A value is expected at b[i].
		if i >= len(b) {
			return 0, errSyntax
		}
		closed := true // whether b[i-1] now ends a complete value
		switch c := b[i]; {
		case c == '{' || c == '[':
			if depth++; depth > maxDepth {
				return 0, errTooDeep
			}
			kinds.set(depth-base-1, c == '{')
			i = skipSpace(b, i+1)
			if i < len(b) && (b[i] == '}' && c == '{' || b[i] == ']' && c == '[') {
				i++
				depth--
				break
			}
			closed = false
			if c == '{' {
				var err error
				if i, err = scanKey(b, i); err != nil {
					return 0, err
				}
			}
		case c == '"':
			var err error
			if i, err = scanString(b, i); err != nil {
				return 0, err
			}
		case c == '-' || '0' <= c && c <= '9':
			var err error
			if i, err = scanNumber(b, i); err != nil {
				return 0, err
			}
		case c == 't':
			if i = scanLiteral(b, i, "true"); i < 0 {
				return 0, errSyntax
			}
		case c == 'f':
			if i = scanLiteral(b, i, "false"); i < 0 {
				return 0, errSyntax
			}
		case c == 'n':
			if i = scanLiteral(b, i, "null"); i < 0 {
				return 0, errSyntax
			}
		default:
			return 0, errSyntax
		}
		// After a complete value: close containers until one continues.
		for closed {
			if depth == base {
				return i, nil
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return 0, errSyntax
			}
			object := kinds.object(depth - base - 1)
			switch {
			case b[i] == ',':
				i = skipSpace(b, i+1)
				if object {
					var err error
					if i, err = scanKey(b, i); err != nil {
						return 0, err
					}
				}
				closed = false
			case object && b[i] == '}' || !object && b[i] == ']':
				i++
				depth--
			default:
				return 0, errSyntax
			}
		}
	}
}

// scanKey scans an object key, the colon and the whitespace after it, and
// returns the index of the member's value.
func scanKey(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return 0, errSyntax
	}
	i, err := scanString(b, i)
	if err != nil {
		return 0, err
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return 0, errSyntax
	}
	return skipSpace(b, i+1), nil
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// hasSpecial reports whether any of the eight bytes of w is not plain: a
// control character (below 0x20), '"' or '\\'. (x-ones)&^x&highs is
// non-zero exactly when a byte of x is zero; for bytes below 0x20 the same
// holds with 0x20 in place of 1, bytes of 0x80 and above never counting.
func hasSpecial(w uint64) bool {
	q := w ^ (ones * '"')
	bs := w ^ (ones * '\\')
	return ((w-ones*0x20)&^w|(q-ones)&^q|(bs-ones)&^bs)&highs != 0
}

// plain marks the bytes that stand for themselves inside a JSON string.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString validates the string starting at b[i] == '"' and returns the
// index just past its closing quote.
func scanString(b []byte, i int) (int, error) {
	for i++; i < len(b); i++ {
		// Skip eight plain bytes at a time, then byte by byte up to the
		// next byte that is not plain.
		for i+8 <= len(b) && !hasSpecial(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i >= len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return 0, errSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if hex4(b[i+2:]) < 0 {
					return 0, errSyntax
				}
				i += 5
			default:
				return 0, errSyntax
			}
		case c < 0x20:
			return 0, errSyntax
		}
	}
	return 0, errSyntax
}

// scanNumber validates the number starting at b[i] and returns the index
// just past it: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(b []byte, i int) (int, error) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return 0, errSyntax
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return 0, errSyntax
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return 0, errSyntax
		}
		i = j
	}
	return i, nil
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// scanLiteral returns the index past lit at b[i], or -1.
func scanLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// hex4 decodes the four hex digits at the start of b, or returns -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// stringContent returns the decoded content of raw, a complete JSON value
// already validated by scanValue, and whether raw is a string at all. It
// allocates only when the string has escapes. Lone surrogates decode to
// U+FFFD, as in encoding/json.
func stringContent(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return nil, false
	}
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') < 0 {
		return s, true
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch s[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(s[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				var r2 rune = -1
				if len(s)-i >= 6 && s[i] == '\\' && s[i+1] == 'u' {
					r2 = hex4(s[i+2:])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, s[i+1])
		}
		i += 2
	}
	return out, true
}

// intValue parses raw as a JSON integer (no fraction, no exponent) that fits
// an int64.
func intValue(raw []byte) (int64, bool) {
	neg := len(raw) > 0 && raw[0] == '-'
	digits := raw
	if neg {
		digits = raw[1:]
	}
	if len(digits) == 0 || len(digits) > 1 && digits[0] == '0' {
		return 0, false
	}
	limit := uint64(1<<63 - 1)
	if neg {
		limit++
	}
	var u uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if u > (limit-d)/10 {
			return 0, false
		}
		u = u*10 + d
	}
	if neg {
		return -int64(u), true // -(1<<63) wraps to itself, which is right
	}
	return int64(u), true
}
