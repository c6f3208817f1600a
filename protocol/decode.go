package protocol

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// The errors the decoders return. Each description is fixed text: none of
// them may ever include input, which can hold a token.
var (
	errInvalidUTF8  = fmt.Errorf("%w: invalid UTF-8", ErrMalformed)
	errNotObject    = fmt.Errorf("%w: not an object", ErrMalformed)
	errSyntax       = fmt.Errorf("%w: invalid JSON", ErrMalformed)
	errTooDeep      = fmt.Errorf("%w: nesting too deep", ErrMalformed)
	errTrailingData = fmt.Errorf("%w: trailing data", ErrMalformed)
	errDuplicateKey = fmt.Errorf("%w: duplicate key", ErrMalformed)

	errMissingType   = fmt.Errorf("%w: missing type", ErrMalformed)
	errTypeNotString = fmt.Errorf("%w: type not a string", ErrMalformed)
	errUnknownType   = fmt.Errorf("%w: unknown type", ErrMalformed)

	errMissingToken   = fmt.Errorf("%w: missing token", ErrMalformed)
	errTokenNotString = fmt.Errorf("%w: token not a string", ErrMalformed)
	errEmptyToken     = fmt.Errorf("%w: empty token", ErrMalformed)
	errMissingData    = fmt.Errorf("%w: missing data", ErrMalformed)
	errIDNotString    = fmt.Errorf("%w: id not a string", ErrMalformed)
	errIDTooLong      = fmt.Errorf("%w: id too long", ErrMalformed)

	errMissingSession   = fmt.Errorf("%w: missing session", ErrMalformed)
	errSessionNotString = fmt.Errorf("%w: session not a string", ErrMalformed)
	errMissingSub       = fmt.Errorf("%w: missing sub", ErrMalformed)
	errSubNotString     = fmt.Errorf("%w: sub not a string", ErrMalformed)
	errMissingExp       = fmt.Errorf("%w: missing exp", ErrMalformed)
	errExpNotInt        = fmt.Errorf("%w: exp not an integer", ErrMalformed)
	errMissingDeadline  = fmt.Errorf("%w: missing deadline", ErrMalformed)
	errDeadlineNotInt   = fmt.Errorf("%w: deadline not an integer", ErrMalformed)
	errMissingCode      = fmt.Errorf("%w: missing code", ErrMalformed)
	errCodeNotInt       = fmt.Errorf("%w: code not an integer", ErrMalformed)
	errMissingMessage   = fmt.Errorf("%w: missing message", ErrMalformed)
	errMessageNotString = fmt.Errorf("%w: message not a string", ErrMalformed)
	errRefNotString     = fmt.Errorf("%w: ref not a string", ErrMalformed)

	errResumeNotObject = fmt.Errorf("%w: resume not an object", ErrMalformed)
	errMissingEpoch    = fmt.Errorf("%w: missing epoch", ErrMalformed)
	errEpochNotString  = fmt.Errorf("%w: epoch not a string", ErrMalformed)
	errEpochTooLong    = fmt.Errorf("%w: epoch too long", ErrMalformed)
	errMissingSeq      = fmt.Errorf("%w: missing seq", ErrMalformed)
	errSeqNotInt       = fmt.Errorf("%w: seq not a non-negative integer", ErrMalformed)
	errResumeNotString = fmt.Errorf("%w: resume not a string", ErrMalformed)
	errUnknownResume   = fmt.Errorf("%w: unknown resume", ErrMalformed)
)

// maxEpochLen is the longest epoch, in bytes.
const maxEpochLen = 64

// Field names, in the order of the values parseObject returns.
var (
	clientFields   = []string{"type", "token", "id", "data", "resume"}
	serverFields   = []string{"type", "session", "sub", "exp", "deadline", "data", "code", "message", "ref", "epoch", "resume", "seq"}
	positionFields = []string{"epoch", "seq"}
)

const (
	cType = iota
	cToken
	cID
	cData
	cResume
	numClientFields
)

const (
	sType = iota
	sSession
	sSub
	sExp
	sDeadline
	sData
	sCode
	sMessage
	sRef
	sEpoch
	sResume
	sSeq
	numServerFields
)

// DecodeClient decodes one client-to-server frame. Any error wraps
// ErrMalformed; see the package documentation for what is rejected. The
// returned frame's Data aliases b, so it is valid only as long as b is not
// reused (a server hands it to its handler before it reads the next frame,
// and saves a copy per message); its strings (Token, ID) are copies.
func DecodeClient(b []byte) (ClientFrame, error) {
	var v [numClientFields][]byte
	if err := parseObject(b, clientFields, v[:]); err != nil {
		return ClientFrame{}, err
	}
	typ, err := frameType(v[cType])
	if err != nil {
		return ClientFrame{}, err
	}
	switch typ {
	case TypeAuth:
		if v[cToken] == nil {
			return ClientFrame{}, errMissingToken
		}
		tok, ok := stringContent(v[cToken])
		if !ok {
			return ClientFrame{}, errTokenNotString
		}
		if len(tok) == 0 {
			return ClientFrame{}, errEmptyToken
		}
		f := ClientFrame{Type: TypeAuth, Token: string(tok)}
		if v[cResume] != nil {
			pos, err := position(v[cResume])
			if err != nil {
				return ClientFrame{}, err
			}
			f.Resume = &pos
		}
		return f, nil
	case TypeMessage:
		if v[cData] == nil {
			return ClientFrame{}, errMissingData
		}
		f := ClientFrame{Type: TypeMessage}
		if v[cID] != nil {
			id, ok := stringContent(v[cID])
			if !ok {
				return ClientFrame{}, errIDNotString
			}
			if len(id) > MaxMessageIDLen {
				return ClientFrame{}, errIDTooLong
			}
			f.ID = string(id)
		}
		if v[cToken] != nil {
			tok, ok := stringContent(v[cToken])
			if !ok {
				return ClientFrame{}, errTokenNotString
			}
			if len(tok) == 0 {
				return ClientFrame{}, errEmptyToken
			}
			f.Token = string(tok)
		}
		f.Data = v[cData]
		return f, nil
	}
	return ClientFrame{}, errUnknownType
}

// DecodeServer decodes one server-to-client frame, with the same strictness
// as DecodeClient. Required fields: session, sub and exp for auth_ok; exp and
// deadline for reauth_required; data for message; code and message for error
// (ref is optional). Integers must be JSON integers (no fraction or exponent)
// that fit the field. The returned frame does not alias b.
func DecodeServer(b []byte) (ServerFrame, error) {
	var v [numServerFields][]byte
	if err := parseObject(b, serverFields, v[:]); err != nil {
		return ServerFrame{}, err
	}
	typ, err := frameType(v[sType])
	if err != nil {
		return ServerFrame{}, err
	}
	f := ServerFrame{Type: typ}
	switch typ {
	case TypeAuthOK:
		if f.Session, err = stringField(v[sSession], errMissingSession, errSessionNotString); err != nil {
			return ServerFrame{}, err
		}
		if f.Subject, err = stringField(v[sSub], errMissingSub, errSubNotString); err != nil {
			return ServerFrame{}, err
		}
		if f.Exp, err = intField(v[sExp], errMissingExp, errExpNotInt); err != nil {
			return ServerFrame{}, err
		}
		if v[sEpoch] != nil {
			f.Stream = true
			if f.Epoch, err = epochField(v[sEpoch]); err != nil {
				return ServerFrame{}, err
			}
			if v[sSeq] == nil {
				return ServerFrame{}, errMissingSeq
			}
			if f.Seq, err = seqField(v[sSeq]); err != nil {
				return ServerFrame{}, err
			}
		}
		if v[sResume] != nil {
			r, ok := stringContent(v[sResume])
			if !ok {
				return ServerFrame{}, errResumeNotString
			}
			switch string(r) {
			case ResumeOK:
				f.Resume = ResumeOK
			case ResumeLost:
				f.Resume = ResumeLost
			default:
				return ServerFrame{}, errUnknownResume
			}
		}
	case TypeReauthRequired:
		if f.Exp, err = intField(v[sExp], errMissingExp, errExpNotInt); err != nil {
			return ServerFrame{}, err
		}
		if f.Deadline, err = intField(v[sDeadline], errMissingDeadline, errDeadlineNotInt); err != nil {
			return ServerFrame{}, err
		}
	case TypeMessage:
		if v[sData] == nil {
			return ServerFrame{}, errMissingData
		}
		f.Data = bytes.Clone(v[sData])
		if v[sSeq] != nil {
			if f.Seq, err = seqField(v[sSeq]); err != nil {
				return ServerFrame{}, err
			}
			if v[sEpoch] == nil {
				return ServerFrame{}, errMissingEpoch
			}
			if f.Epoch, err = epochField(v[sEpoch]); err != nil {
				return ServerFrame{}, err
			}
		}
	case TypeError:
		code, err := intField(v[sCode], errMissingCode, errCodeNotInt)
		if err != nil {
			return ServerFrame{}, err
		}
		if int64(ErrorCode(code)) != code { // int is 32 bits wide on some platforms
			return ServerFrame{}, errCodeNotInt
		}
		f.Code = ErrorCode(code)
		if f.Message, err = stringField(v[sMessage], errMissingMessage, errMessageNotString); err != nil {
			return ServerFrame{}, err
		}
		if v[sRef] != nil {
			ref, ok := stringContent(v[sRef])
			if !ok {
				return ServerFrame{}, errRefNotString
			}
			f.Ref = string(ref)
		}
	default:
		return ServerFrame{}, errUnknownType
	}
	return f, nil
}

// frameType returns the canonical constant for the "type" value raw, so that
// decoding a type never allocates.
func frameType(raw []byte) (string, error) {
	if raw == nil {
		return "", errMissingType
	}
	s, ok := stringContent(raw)
	if !ok {
		return "", errTypeNotString
	}
	switch string(s) {
	case TypeAuth:
		return TypeAuth, nil
	case TypeMessage:
		return TypeMessage, nil
	case TypeAuthOK:
		return TypeAuthOK, nil
	case TypeReauthRequired:
		return TypeReauthRequired, nil
	case TypeError:
		return TypeError, nil
	}
	return "", errUnknownType
}

// position decodes a resume object: {"epoch":"...","seq":n}.
func position(raw []byte) (Position, error) {
	if raw[0] != '{' {
		return Position{}, errResumeNotObject
	}
	var v [2][]byte
	if err := parseObject(raw, positionFields, v[:]); err != nil {
		return Position{}, err
	}
	if v[0] == nil {
		return Position{}, errMissingEpoch
	}
	epoch, err := epochField(v[0])
	if err != nil {
		return Position{}, err
	}
	if v[1] == nil {
		return Position{}, errMissingSeq
	}
	seq, err := seqField(v[1])
	if err != nil {
		return Position{}, err
	}
	return Position{Epoch: epoch, Seq: seq}, nil
}

func epochField(raw []byte) (string, error) {
	e, ok := stringContent(raw)
	if !ok {
		return "", errEpochNotString
	}
	if len(e) > maxEpochLen {
		return "", errEpochTooLong
	}
	return string(e), nil
}

func seqField(raw []byte) (uint64, error) {
	n, ok := intValue(raw)
	if !ok || n < 0 {
		return 0, errSeqNotInt
	}
	return uint64(n), nil
}

func stringField(raw []byte, errMissing, errNotString error) (string, error) {
	if raw == nil {
		return "", errMissing
	}
	s, ok := stringContent(raw)
	if !ok {
		return "", errNotString
	}
	return string(s), nil
}

func intField(raw []byte, errMissing, errNotInt error) (int64, error) {
	if raw == nil {
		return 0, errMissing
	}
	n, ok := intValue(raw)
	if !ok {
		return 0, errNotInt
	}
	return n, nil
}

// parseObject checks that b is valid UTF-8 holding exactly one JSON object
// with no duplicate keys, and sets vals[i] to the raw value (a sub-slice of
// b) of the member named names[i], or nil when there is none.
func parseObject(b []byte, names []string, vals [][]byte) error {
	if !utf8.Valid(b) {
		return errInvalidUTF8
	}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errNotObject
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		var seen keySet
		for {
			if i >= len(b) || b[i] != '"' {
				return errSyntax
			}
			end, err := scanString(b, i)
			if err != nil {
				return err
			}
			key, _ := stringContent(b[i:end])
			if !seen.add(key) {
				return errDuplicateKey
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return errSyntax
			}
			start := skipSpace(b, i+1)
			if i, err = scanValue(b, start, 1); err != nil {
				return err
			}
			for n, name := range names {
				if string(key) == name {
					vals[n] = b[start:i:i]
					break
				}
			}
			i = skipSpace(b, i)
			if i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return errSyntax
		}
	}
	if skipSpace(b, i) != len(b) {
		return errTrailingData
	}
	return nil
}

// keySet finds duplicate keys. Frames have a handful of keys, which a linear
// search over a fixed array handles without allocating; a frame with many
// (unknown) keys switches to a map so it cannot cost quadratic time.
type keySet struct {
	small [16][]byte
	n     int
	big   map[string]struct{}
}

// add records key and reports whether it was new.
func (s *keySet) add(key []byte) bool {
	if s.big != nil {
		if _, dup := s.big[string(key)]; dup {
			return false
		}
		s.big[string(key)] = struct{}{}
		return true
	}
	for _, k := range s.small[:s.n] {
		if bytes.Equal(k, key) {
			return false
		}
	}
	if s.n < len(s.small) {
		s.small[s.n] = key
		s.n++
		return true
	}
	s.big = make(map[string]struct{}, 2*len(s.small))
	for _, k := range s.small {
		s.big[string(k)] = struct{}{}
	}
	s.big[string(key)] = struct{}{}
	return true
}
