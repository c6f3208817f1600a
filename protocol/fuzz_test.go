package protocol_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/protocol"
)

// The reference decoders below restate the protocol rules on top of
// encoding/json, slowly and obviously. The fuzz targets require the real
// decoders to agree with them on every input, in both directions.

// refObject returns the members of b if b is valid UTF-8 holding one JSON
// object without duplicate keys.
func refObject(b []byte) (map[string]json.RawMessage, bool) {
	if !utf8.Valid(b) || !json.Valid(b) {
		return nil, false
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); t[0] != '{' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		return nil, false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key := tok.(string)
		if seen[key] {
			return nil, false
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, false
		}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, false
	}
	return m, true
}

func refString(m map[string]json.RawMessage, key string) (string, bool) {
	raw, ok := m[key]
	if !ok || raw[0] != '"' {
		return "", false
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

func refInt(m map[string]json.RawMessage, key string) (int64, bool) {
	raw, ok := m[key]
	if !ok || raw[0] == 'n' { // null unmarshals into an int64 without error
		return 0, false
	}
	var n int64
	return n, json.Unmarshal(raw, &n) == nil
}

// refPosition decodes a resume object with encoding/json: an object with a
// string epoch of at most 64 bytes and a non-negative integer seq.
func refPosition(raw json.RawMessage) (protocol.Position, bool) {
	m, ok := refObject(raw)
	if !ok {
		return protocol.Position{}, false
	}
	epoch, ok1 := refString(m, "epoch")
	seq, ok2 := refInt(m, "seq")
	if !ok1 || !ok2 || len(epoch) > 64 || seq < 0 {
		return protocol.Position{}, false
	}
	return protocol.Position{Epoch: epoch, Seq: uint64(seq)}, true
}

func refDecodeClient(b []byte) (protocol.ClientFrame, bool) {
	m, ok := refObject(b)
	if !ok {
		return protocol.ClientFrame{}, false
	}
	typ, ok := refString(m, "type")
	if !ok {
		return protocol.ClientFrame{}, false
	}
	switch typ {
	case protocol.TypeAuth:
		tok, ok := refString(m, "token")
		if !ok || tok == "" {
			return protocol.ClientFrame{}, false
		}
		f := protocol.ClientFrame{Type: typ, Token: tok}
		if raw, present := m["resume"]; present {
			pos, ok := refPosition(raw)
			if !ok {
				return protocol.ClientFrame{}, false
			}
			f.Resume = &pos
		}
		return f, true
	case protocol.TypeMessage:
		data, ok := m["data"]
		if !ok {
			return protocol.ClientFrame{}, false
		}
		var id, tok string
		if _, present := m["id"]; present {
			if id, ok = refString(m, "id"); !ok || len(id) > protocol.MaxMessageIDLen {
				return protocol.ClientFrame{}, false
			}
		}
		if _, present := m["token"]; present {
			if tok, ok = refString(m, "token"); !ok || tok == "" {
				return protocol.ClientFrame{}, false
			}
		}
		return protocol.ClientFrame{Type: typ, ID: id, Token: tok, Data: data}, true
	}
	return protocol.ClientFrame{}, false
}

func refDecodeServer(b []byte) (protocol.ServerFrame, bool) {
	m, ok := refObject(b)
	if !ok {
		return protocol.ServerFrame{}, false
	}
	typ, ok := refString(m, "type")
	if !ok {
		return protocol.ServerFrame{}, false
	}
	f := protocol.ServerFrame{Type: typ}
	switch typ {
	case protocol.TypeAuthOK:
		var ok1, ok2, ok3 bool
		f.Session, ok1 = refString(m, "session")
		f.Subject, ok2 = refString(m, "sub")
		f.Exp, ok3 = refInt(m, "exp")
		ok = ok1 && ok2 && ok3
		if _, present := m["epoch"]; present {
			var ok4, ok5 bool
			var n int64
			f.Stream = true
			f.Epoch, ok4 = refString(m, "epoch")
			n, ok5 = refInt(m, "seq")
			f.Seq = uint64(n)
			ok = ok && ok4 && len(f.Epoch) <= 64 && ok5 && n >= 0
		}
		if _, present := m["resume"]; present {
			var ok5 bool
			f.Resume, ok5 = refString(m, "resume")
			ok = ok && ok5 && (f.Resume == protocol.ResumeOK || f.Resume == protocol.ResumeLost)
		}
	case protocol.TypeReauthRequired:
		var ok1, ok2 bool
		f.Exp, ok1 = refInt(m, "exp")
		f.Deadline, ok2 = refInt(m, "deadline")
		ok = ok1 && ok2
	case protocol.TypeMessage:
		f.Data, ok = m["data"]
		if _, present := m["seq"]; present {
			n, ok2 := refInt(m, "seq")
			var ok3 bool
			f.Epoch, ok3 = refString(m, "epoch")
			ok = ok && ok2 && n >= 0 && ok3 && len(f.Epoch) <= 64
			f.Seq = uint64(n)
		}
	case protocol.TypeError:
		var code int64
		var ok1, ok2 bool
		code, ok1 = refInt(m, "code")
		f.Code = protocol.ErrorCode(code)
		f.Message, ok2 = refString(m, "message")
		ok = ok1 && ok2 && int64(f.Code) == code
		if _, present := m["ref"]; present {
			var ok3 bool
			f.Ref, ok3 = refString(m, "ref")
			ok = ok && ok3
		}
	default:
		ok = false
	}
	if !ok {
		return protocol.ServerFrame{}, false
	}
	return f, true
}

func encodeClient(f protocol.ClientFrame) []byte { return protocol.AppendClient(nil, f) }

func encodeServer(f protocol.ServerFrame) []byte { return protocol.AppendServer(nil, f) }

// codec bundles one direction of the protocol for the shared test helpers.
type codec[F any] struct {
	decode func([]byte) (F, error)
	ref    func([]byte) (F, bool)
	encode func(F) []byte
	// aliases: the decoded frame's Data points into the input (DecodeClient).
	aliases bool
}

var (
	clientCodec = codec[protocol.ClientFrame]{protocol.DecodeClient, refDecodeClient, encodeClient, true}
	serverCodec = codec[protocol.ServerFrame]{protocol.DecodeServer, refDecodeServer, encodeServer, false}
)

// checkError requires err to be one of the decoders' fixed errors: a text
// from that closed set cannot carry any of the input.
func checkError(t *testing.T, err error) {
	t.Helper()
	require.ErrorIs(t, err, protocol.ErrMalformed)
	require.Contains(t, errorTexts, err.Error())
}

// checkDecode requires c.decode to agree with the reference decoder on b, not
// to modify b, to alias it only if c.aliases says so, and (for accepted
// frames) to survive re-encoding.
func checkDecode[F any](t *testing.T, c codec[F], b []byte) {
	b = bytes.Clone(b) // the fuzzing engine owns its input
	in := bytes.Clone(b)
	got, err := c.decode(b)
	require.Equal(t, in, b, "decoder must not modify its input")
	want, ok := c.ref(b)
	if !ok {
		require.Error(t, err, "accepted a frame the reference rejects")
		checkError(t, err)
		return
	}
	require.NoError(t, err, "rejected a frame the reference accepts")
	require.Equal(t, want, got)

	enc := c.encode(got)
	require.True(t, utf8.Valid(enc))
	again, err := c.decode(enc)
	require.NoError(t, err)
	require.Equal(t, got, again)

	if c.aliases {
		return // checkAliases
	}
	for i := range b {
		b[i] = 'x'
	}
	require.Equal(t, want, got, "decoded frame aliases the input")
}

func FuzzDecodeClient(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, clientCodec, b)
		checkAliases(t, b)
	})
}

// checkAliases requires DecodeClient's Data to point into b (a server saves
// a copy per message that way), and nothing else to.
func checkAliases(t *testing.T, b []byte) {
	b = bytes.Clone(b)
	got, err := protocol.DecodeClient(b)
	if err != nil {
		return
	}
	want := got
	want.Data = bytes.Clone(got.Data)
	for i := range b {
		b[i] = 'x'
	}
	require.Equal(t, want.Type, got.Type)
	require.Equal(t, want.Token, got.Token, "Token must not alias the input")
	require.Equal(t, want.ID, got.ID, "ID must not alias the input")
	require.Equal(t, strings.Repeat("x", len(got.Data)), string(got.Data), "Data must alias the input")
}

func FuzzDecodeServer(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, serverCodec, b) })
}

// TestReferenceDecoderSanity guards the oracle itself: a broken reference
// would make the fuzz targets agree with a broken decoder.
func TestReferenceDecoderSanity(t *testing.T) {
	t.Parallel()
	_, ok := refDecodeClient([]byte(`{"type":"auth","type":"auth","token":"x"}`))
	require.False(t, ok)
	_, ok = refDecodeClient([]byte(`{"type":"auth","token":null}`))
	require.False(t, ok)
	f, ok := refDecodeClient([]byte(` {"type":"message","data": [1, 2] } `))
	require.True(t, ok)
	require.Equal(t, `[1, 2]`, string(f.Data))
	_, ok = refDecodeServer([]byte(`{"type":"reauth_required","exp":1.0,"deadline":2}`))
	require.False(t, ok)
}
