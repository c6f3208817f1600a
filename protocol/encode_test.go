package protocol_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/protocol"
)

// trickyStrings exercise the string escaper: each must survive a round trip.
var trickyStrings = []string{
	"",
	"plain",
	`quote " and backslash \ and slash /`,
	"\x00\x01\x07\x08\t\n\v\f\r\x1b\x1f",
	"\x7f DEL stays raw",
	"line\u2028separator\u2029paragraph",
	"é 世界 \U0001F600 \ufeff \ufffd",
	"<script>&amp;</script>",
	`\u0041 is not an escape here`,
	strings.Repeat(`"\`, 40),
}

func TestAppendExact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"auth", protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeAuth, Token: "a.b.c"}), `{"type":"auth","token":"a.b.c"}`},
		{"auth resume", protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeAuth, Token: "t", Resume: &protocol.Position{Epoch: "e1", Seq: 17}}), `{"type":"auth","token":"t","resume":{"epoch":"e1","seq":17}}`},
		{"message with position", protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeMessage, Epoch: "e1", Seq: 42, Data: json.RawMessage(`"x"`)}), `{"type":"message","epoch":"e1","seq":42,"data":"x"}`},
		{"auth_ok resumed", protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeAuthOK, Session: "s", Subject: "u", Exp: 1, Stream: true, Epoch: "e1", Seq: 5, Resume: protocol.ResumeOK}), `{"type":"auth_ok","session":"s","sub":"u","exp":1,"epoch":"e1","seq":5,"resume":"ok"}`},
		{"auth_ok empty stream", protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeAuthOK, Session: "s", Subject: "u", Exp: 1, Stream: true}), `{"type":"auth_ok","session":"s","sub":"u","exp":1,"epoch":"","seq":0}`},
		{"client message", protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeMessage, ID: "7", Data: json.RawMessage(`{"a":1}`)}), `{"type":"message","id":"7","data":{"a":1}}`},
		{"client message no id", protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeMessage, Data: json.RawMessage(`[1]`)}), `{"type":"message","data":[1]}`},
		{"client message nil data", protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeMessage, Data: nil}), `{"type":"message","data":null}`},
		{"auth_ok", protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeAuthOK, Session: "s1", Subject: "alice", Exp: 1700000000}), `{"type":"auth_ok","session":"s1","sub":"alice","exp":1700000000}`},
		{"auth_ok negative", protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeAuthOK, Session: "", Subject: "", Exp: -1 << 63}), `{"type":"auth_ok","session":"","sub":"","exp":-9223372036854775808}`},
		{"reauth_required", protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeReauthRequired, Exp: 100, Deadline: 130}), `{"type":"reauth_required","exp":100,"deadline":130}`},
		{"message", protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeMessage, Data: json.RawMessage(`"hi"`)}), `{"type":"message","data":"hi"}`},
		{"message empty data", protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeMessage, Data: json.RawMessage{}}), `{"type":"message","data":null}`},
		{"error", protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeError, Code: 4429, Message: "slow down", Ref: "m1"}), `{"type":"error","code":4429,"message":"slow down","ref":"m1"}`},
		{"error no ref", protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeError, Code: 4400, Message: "bad"}), `{"type":"error","code":4400,"message":"bad"}`},
		{"appends to dst", protocol.AppendServer([]byte("prefix"), protocol.ServerFrame{Type: protocol.TypeMessage, Data: json.RawMessage(`1`)}), `prefix{"type":"message","data":1}`},
		{"escapes", protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeAuth, Token: "\"\\\x00\x1f\n\u2028\u2029/<>&\x7f"}), `{"type":"auth","token":"\"\\\u0000\u001f\u000a\u2028\u2029/<>&` + "\x7f" + `"}`},
		{"invalid UTF-8", protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeAuth, Token: "a\xffb\xc3"}), `{"type":"auth","token":"a\ufffdb\ufffd"}`},
		{"non-ASCII raw", protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeAuth, Token: "é世\U0001F600"}), `{"type":"auth","token":"é世` + "\U0001F600" + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, string(tt.got))
			assert.True(t, json.Valid(tt.got[strings.IndexByte(string(tt.got), '{'):]))
		})
	}
}

// TestAppendStringMatchesEncodingJSON checks the escaper against the
// standard decoder and that its output is safe to embed in JavaScript.
func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range trickyStrings {
		out := protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeAuth, Token: s})
		require.True(t, utf8.Valid(out))
		var v struct{ Token string }
		require.NoError(t, json.Unmarshal(out, &v), "%q", s)
		assert.Equal(t, s, v.Token)
		assert.NotContains(t, string(out), "\u2028")
		assert.NotContains(t, string(out), "\u2029")
		for _, c := range out {
			assert.GreaterOrEqual(t, c, byte(0x20), "raw control character in %q", out)
		}
	}
}

// checkRoundTrip requires every frame to decode to itself once encoded.
func checkRoundTrip[F any](t *testing.T, c codec[F], frames []F) {
	t.Helper()
	for _, f := range frames {
		got, err := c.decode(c.encode(f))
		require.NoError(t, err, "%+v", f)
		assert.Equal(t, f, got)
	}
}

func TestRoundTripClient(t *testing.T) {
	t.Parallel()
	var frames []protocol.ClientFrame
	for _, s := range trickyStrings {
		if s != "" {
			frames = append(frames, protocol.ClientFrame{Type: protocol.TypeAuth, Token: s})
		}
		if len(s) <= protocol.MaxMessageIDLen {
			frames = append(frames, protocol.ClientFrame{Type: protocol.TypeMessage, ID: s, Data: json.RawMessage(`{"s":[1,"\u2028"]}`)})
		}
	}
	frames = append(frames, protocol.ClientFrame{Type: protocol.TypeMessage, ID: strings.Repeat("€", 21), Data: json.RawMessage(`null`)},
		protocol.ClientFrame{Type: protocol.TypeAuth, Token: "t", Resume: &protocol.Position{Epoch: "é\"\u2028", Seq: 1<<63 - 1}},
		protocol.ClientFrame{Type: protocol.TypeAuth, Token: "t", Resume: &protocol.Position{}})
	checkRoundTrip(t, clientCodec, frames)
}

func TestRoundTripServer(t *testing.T) {
	t.Parallel()
	frames := []protocol.ServerFrame{
		{Type: protocol.TypeReauthRequired, Exp: 1<<63 - 1, Deadline: -1 << 63},
		{Type: protocol.TypeReauthRequired},
		{Type: protocol.TypeMessage, Epoch: "e", Seq: 1<<63 - 1, Data: json.RawMessage(`1`)},
		{Type: protocol.TypeAuthOK, Session: "s", Subject: "u", Exp: 1, Stream: true, Epoch: "ep", Seq: 3, Resume: protocol.ResumeLost},
		{Type: protocol.TypeAuthOK, Session: "s", Subject: "u", Exp: 1, Stream: true},
		{Type: protocol.TypeMessage, Data: json.RawMessage(`[true,false,null,-1.5e+10,"x"]`)},
		{Type: protocol.TypeError, Code: protocol.ErrorTooManyRequests, Message: "too many", Ref: ""},
	}
	for _, s := range trickyStrings {
		frames = append(frames,
			protocol.ServerFrame{Type: protocol.TypeAuthOK, Session: s, Subject: s, Exp: 42},
			protocol.ServerFrame{Type: protocol.TypeError, Code: -7, Message: s, Ref: s},
		)
	}
	checkRoundTrip(t, serverCodec, frames)
}

func TestValidData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{`null`, true},
		{`0`, true},
		{`-1.5e+3`, true},
		{`"s"`, true},
		{`{"a":[1,{"b":null}]}`, true},
		{"  [1]\n", true},
		{`{"a":1,"a":2}`, true}, // duplicates are the application's business inside data
		{nest(9999), true},
		{nest(10000), false}, // would exceed the frame's depth limit
		{``, false},
		{` `, false},
		{`1 2`, false},
		{`{}{}`, false},
		{`[1,]`, false},
		{`01`, false},
		{`"\x"`, false},
		{"\"\xff\"", false}, // json.Valid accepts this; a text frame cannot carry it
		{`{"a"}`, false},
		{`nul`, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, protocol.ValidData([]byte(tt.in)), "%.40q", tt.in)
	}
}

// TestValidDataFitsFrame checks the encoders' contract: data that passes
// ValidData always yields a frame the decoders accept, with the data intact.
func TestValidDataFitsFrame(t *testing.T) {
	t.Parallel()
	for _, d := range []string{`1`, ` {"x" : [ ] } `, nest(9999), `"\u2028"`} {
		require.True(t, protocol.ValidData([]byte(d)))
		f, err := protocol.DecodeClient(protocol.AppendClient(nil, protocol.ClientFrame{Type: protocol.TypeMessage, Data: json.RawMessage(d)}))
		require.NoError(t, err)
		assert.Equal(t, strings.TrimSpace(d), string(f.Data))
		s, err := protocol.DecodeServer(protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeMessage, Data: json.RawMessage(d)}))
		require.NoError(t, err)
		assert.Equal(t, strings.TrimSpace(d), string(s.Data))
	}
}

func TestAppendAllocs(t *testing.T) {
	// Not parallel: AllocsPerRun is disturbed by other goroutines' work.
	buf := make([]byte, 0, 512)
	data := json.RawMessage(`{"text":"hi"}`)
	tricky := strings.Join(trickyStrings, "")[:200]
	fns := map[string]func(){
		"AppendAuth": func() {
			buf = protocol.AppendClient(buf[:0], protocol.ClientFrame{Type: protocol.TypeAuth, Token: tricky})
		},
		"AppendClientMessage": func() {
			buf = protocol.AppendClient(buf[:0], protocol.ClientFrame{Type: protocol.TypeMessage, ID: "id\n", Data: data})
		},
		"AppendAuthOK": func() {
			buf = protocol.AppendServer(buf[:0], protocol.ServerFrame{Type: protocol.TypeAuthOK, Session: "sess", Subject: tricky, Exp: 1 << 40})
		},
		"AppendReauthRequired": func() {
			buf = protocol.AppendServer(buf[:0], protocol.ServerFrame{Type: protocol.TypeReauthRequired, Exp: 1, Deadline: 2})
		},
		"AppendMessage": func() {
			buf = protocol.AppendServer(buf[:0], protocol.ServerFrame{Type: protocol.TypeMessage, Data: data})
		},
		"AppendError": func() {
			buf = protocol.AppendServer(buf[:0], protocol.ServerFrame{Type: protocol.TypeError, Code: 4400, Message: tricky, Ref: "ref"})
		},
	}
	for name, fn := range fns {
		assert.Zero(t, testing.AllocsPerRun(100, fn), name)
	}
}

func BenchmarkAppendMessage(b *testing.B) {
	data := json.RawMessage(`{"text":"hi"}`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = protocol.AppendServer(buf[:0], protocol.ServerFrame{Type: protocol.TypeMessage, Data: data})
	}
}

func BenchmarkAppendError(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = protocol.AppendServer(buf[:0], protocol.ServerFrame{Type: protocol.TypeError, Code: 4429, Message: "rate limit exceeded", Ref: "req-42"})
	}
}

// An encoder asked for a frame type of the other direction, or none, is a
// programming error: it panics rather than write a frame no peer accepts.
func TestAppendUnknownTypePanics(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{"", "auth_ok", "bogus"} {
		assert.Panics(t, func() { protocol.AppendClient(nil, protocol.ClientFrame{Type: typ}) }, "client %q", typ)
	}
	for _, typ := range []string{"", "auth", "bogus"} {
		assert.Panics(t, func() { protocol.AppendServer(nil, protocol.ServerFrame{Type: typ}) }, "server %q", typ)
	}
}

// TestValidDataStrings checks the string scanner, which skips eight plain
// bytes at a time, against encoding/json (and utf8.Valid, which json.Valid
// does not check): a string of every length up to 40
// with one byte of every kind that ends or breaks a run of plain bytes at
// every position, so that it falls at every place in an eight-byte word.
func TestValidDataStrings(t *testing.T) {
	t.Parallel()
	specials := []string{`"`, `\`, `\n`, `\"`, `\\`, `\u00e9`, `\x`, "\x00", "\x1f", "\x7f", " ", "é", "\u2028", "\xff"}
	for n := range 41 {
		for at := 0; at <= n; at++ {
			for _, sp := range specials {
				s := `"` + strings.Repeat("a", at) + sp + strings.Repeat("b", n-at) + `"`
				want := json.Valid([]byte(s)) && utf8.ValidString(s)
				assert.Equal(t, want, protocol.ValidData([]byte(s)), "%q", s)
			}
		}
	}
}
