package protocol_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/protocol"
)

// errorTexts is every error text the decoders may return. Tests pin them:
// they are part of what operators see in logs.
var errorTexts = map[string]bool{}

func init() {
	for _, d := range []string{
		"invalid UTF-8", "not an object", "invalid JSON", "nesting too deep",
		"trailing data", "duplicate key", "missing type", "type not a string",
		"unknown type", "missing token", "token not a string", "empty token",
		"missing data", "id not a string", "id too long", "missing session",
		"session not a string", "missing sub", "sub not a string", "missing exp",
		"exp not an integer", "missing deadline", "deadline not an integer",
		"missing code", "code not an integer", "missing message",
		"message not a string", "ref not a string", "resume not an object",
		"missing epoch", "epoch not a string", "epoch too long", "missing seq",
		"seq not a non-negative integer", "resume not a string", "unknown resume",
	} {
		errorTexts["protocol: malformed frame: "+d] = true
	}
}

// nest returns data nested n arrays deep around 0.
func nest(n int) string {
	return strings.Repeat("[", n) + "0" + strings.Repeat("]", n)
}

// manyKeys returns n distinct unknown members followed by a comma.
func manyKeys(n int) string {
	var sb strings.Builder
	for i := range n {
		sb.WriteString(`"k` + strings.Repeat("x", i) + `":1,`)
	}
	return sb.String()
}

var id64 = strings.Repeat("i", 64)

// checkValid requires in to decode to want, in agreement with the reference.
func checkValid[F any](t *testing.T, c codec[F], in string, want F) {
	t.Helper()
	got, err := c.decode([]byte(in))
	require.NoError(t, err)
	assert.Equal(t, want, got)
	checkDecode(t, c, []byte(in))
}

// checkMalformed requires in to be refused with the description desc, in
// agreement with the reference.
func checkMalformed[F any](t *testing.T, c codec[F], in, desc string) {
	t.Helper()
	got, err := c.decode([]byte(in))
	require.EqualError(t, err, "protocol: malformed frame: "+desc)
	require.ErrorIs(t, err, protocol.ErrMalformed)
	assert.Zero(t, got)
	_, ok := c.ref([]byte(in))
	assert.False(t, ok, "the reference decoder disagrees")
}

func TestDecodeClientValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want protocol.ClientFrame
	}{
		{"auth", `{"type":"auth","token":"a.b.c"}`, protocol.ClientFrame{Type: "auth", Token: "a.b.c"}},
		{"auth whitespace", " \t\r\n{ \"type\" :\n\"auth\" , \"token\"\t: \"a.b.c\" }\r\n ", protocol.ClientFrame{Type: "auth", Token: "a.b.c"}},
		{"auth token first", `{"token":"t","type":"auth"}`, protocol.ClientFrame{Type: "auth", Token: "t"}},
		{"auth resume", `{"type":"auth","token":"t","resume":{"epoch":"e1","seq":17}}`, protocol.ClientFrame{Type: "auth", Token: "t", Resume: &protocol.Position{Epoch: "e1", Seq: 17}}},
		{"auth resume from nothing", `{"type":"auth","token":"t","resume":{"seq":0,"epoch":"","x":[1]}}`, protocol.ClientFrame{Type: "auth", Token: "t", Resume: &protocol.Position{}}},
		{"auth resume longest epoch", `{"type":"auth","token":"t","resume":{"epoch":"` + id64 + `","seq":9223372036854775807}}`, protocol.ClientFrame{Type: "auth", Token: "t", Resume: &protocol.Position{Epoch: id64, Seq: 1<<63 - 1}}},
		{"message ignores resume", `{"type":"message","data":1,"resume":5}`, protocol.ClientFrame{Type: "message", Data: json.RawMessage(`1`)}},
		{"message with its own token", `{"type":"message","token":"a.b.c","data":1}`, protocol.ClientFrame{Type: "message", Token: "a.b.c", Data: json.RawMessage(`1`)}},
		{"auth escaped token", `{"type":"auth","token":"a\"b\\c\/d\u00e9\n\t\b\f\r"}`, protocol.ClientFrame{Type: "auth", Token: "a\"b\\c/d\u00e9\n\t\b\f\r"}},
		{"auth escaped key", `{"t\u0079pe":"auth","t\u006fken":"t"}`, protocol.ClientFrame{Type: "auth", Token: "t"}},
		{"auth escaped type", `{"type":"\u0061uth","token":"t"}`, protocol.ClientFrame{Type: "auth", Token: "t"}},
		{"auth surrogate pair", `{"type":"auth","token":"\ud83d\ude00"}`, protocol.ClientFrame{Type: "auth", Token: "\U0001F600"}},
		{"auth lone high surrogate", `{"type":"auth","token":"\ud800x"}`, protocol.ClientFrame{Type: "auth", Token: "\uFFFDx"}},
		{"auth high surrogate then escape", `{"type":"auth","token":"\ud800\u0041"}`, protocol.ClientFrame{Type: "auth", Token: "\uFFFDA"}},
		{"auth lone low surrogate", `{"type":"auth","token":"\udc00"}`, protocol.ClientFrame{Type: "auth", Token: "\uFFFD"}},
		{"auth raw non-ASCII", `{"type":"auth","token":"é 世界 ` + "\u2028" + `"}`, protocol.ClientFrame{Type: "auth", Token: "é 世界 \u2028"}},
		{"auth unknown fields", `{"Type":"x","type":"auth","x":{"a":[1,2.5e-3,true,false,null,"s"]},"token":"t","TOKEN":1}`, protocol.ClientFrame{Type: "auth", Token: "t"}},
		{"auth ignores message fields", `{"type":"auth","token":"t","id":5,"data":null}`, protocol.ClientFrame{Type: "auth", Token: "t"}},
		{"auth NUL in token", `{"type":"auth","token":"\u0000"}`, protocol.ClientFrame{Type: "auth", Token: "\x00"}},
		{"message typical", `{"type":"message","id":"1","data":{"text":"hi"}}`, protocol.ClientFrame{Type: "message", ID: "1", Data: json.RawMessage(`{"text":"hi"}`)}},
		{"message no id", `{"type":"message","data":1}`, protocol.ClientFrame{Type: "message", Data: json.RawMessage(`1`)}},
		{"message empty id", `{"type":"message","id":"","data":1}`, protocol.ClientFrame{Type: "message", Data: json.RawMessage(`1`)}},
		{"message null data", `{"type":"message","data":null}`, protocol.ClientFrame{Type: "message", Data: json.RawMessage(`null`)}},
		{"message string data", `{"type":"message","data":"a\"\u2028"}`, protocol.ClientFrame{Type: "message", Data: json.RawMessage(`"a\"\u2028"`)}},
		{"message data as received", `{"type":"message","data" :  [ 1 , {"a" : -0.5E+2} ]  }`, protocol.ClientFrame{Type: "message", Data: json.RawMessage(`[ 1 , {"a" : -0.5E+2} ]`)}},
		{"message nested duplicate keys", `{"type":"message","data":{"a":1,"a":2}}`, protocol.ClientFrame{Type: "message", Data: json.RawMessage(`{"a":1,"a":2}`)}},
		{"message data first", `{"data":false,"id":"x","type":"message"}`, protocol.ClientFrame{Type: "message", ID: "x", Data: json.RawMessage(`false`)}},
		{"message id 64 bytes", `{"type":"message","id":"` + id64 + `","data":0}`, protocol.ClientFrame{Type: "message", ID: id64, Data: json.RawMessage(`0`)}},
		{"message id 64 bytes escaped", `{"type":"message","id":"` + strings.Repeat(`\u00e9`, 32) + `","data":0}`, protocol.ClientFrame{Type: "message", ID: strings.Repeat("é", 32), Data: json.RawMessage(`0`)}},
		{"message carries a token", `{"type":"message","data":0,"token":"t5"}`, protocol.ClientFrame{Type: "message", Token: "t5", Data: json.RawMessage(`0`)}},
		{"message deep data", `{"type":"message","data":` + nest(9999) + `}`, protocol.ClientFrame{Type: "message", Data: json.RawMessage(nest(9999))}},
		{"many unknown keys", `{` + manyKeys(40) + `"type":"auth","token":"t"}`, protocol.ClientFrame{Type: "auth", Token: "t"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkValid(t, clientCodec, tt.in, tt.want)
		})
	}
}

// malformedCommon are frames that no decoder accepts, with their error.
var malformedCommon = []struct {
	name, in, err string
}{
	{"invalid UTF-8 in value", "{\"type\":\"auth\",\"token\":\"\xff\"}", "invalid UTF-8"},
	{"invalid UTF-8 in unknown field", "{\"type\":\"auth\",\"token\":\"t\",\"x\":\"\xc3\"}", "invalid UTF-8"},
	{"overlong UTF-8", "{\"type\":\"auth\",\"token\":\"\xc0\xaf\"}", "invalid UTF-8"},
	{"UTF-8 encoded surrogate", "{\"type\":\"auth\",\"token\":\"\xed\xa0\x80\"}", "invalid UTF-8"},
	{"invalid UTF-8 outside object", "{\"type\":\"auth\",\"token\":\"t\"}\xff", "invalid UTF-8"},
	{"empty", ``, "not an object"},
	{"whitespace", " \n", "not an object"},
	{"array", `[{"type":"auth","token":"t"}]`, "not an object"},
	{"number", `1`, "not an object"},
	{"null", `null`, "not an object"},
	{"string", `"auth"`, "not an object"},
	{"bool", `true`, "not an object"},
	{"BOM", "\ufeff{\"type\":\"auth\",\"token\":\"t\"}", "not an object"},
	{"two objects", `{"type":"auth","token":"t"}{}`, "trailing data"},
	{"trailing garbage", `{"type":"auth","token":"t"} x`, "trailing data"},
	{"trailing NUL", "{\"type\":\"auth\",\"token\":\"t\"}\x00", "trailing data"},
	{"truncated", `{"type":"auth","token":"t"`, "invalid JSON"},
	{"truncated string", `{"type":"auth","token":"t`, "invalid JSON"},
	{"open brace", `{`, "invalid JSON"},
	{"trailing comma", `{"type":"auth","token":"t",}`, "invalid JSON"},
	{"leading comma", `{,"type":"auth"}`, "invalid JSON"},
	{"missing colon", `{"type" "auth"}`, "invalid JSON"},
	{"single quotes", `{'type':'auth'}`, "invalid JSON"},
	{"bare key", `{type:"auth"}`, "invalid JSON"},
	{"bad literal", `{"type":"auth","token":"t","u":tru}`, "invalid JSON"},
	{"literal prefix", `{"type":"auth","token":"t","u":nulls}`, "invalid JSON"},
	{"leading zero", `{"type":"auth","token":"t","u":01}`, "invalid JSON"},
	{"bare minus", `{"type":"auth","token":"t","u":-}`, "invalid JSON"},
	{"plus sign", `{"type":"auth","token":"t","u":+1}`, "invalid JSON"},
	{"no int part", `{"type":"auth","token":"t","u":.5}`, "invalid JSON"},
	{"no fraction", `{"type":"auth","token":"t","u":1.}`, "invalid JSON"},
	{"no exponent", `{"type":"auth","token":"t","u":1e}`, "invalid JSON"},
	{"NaN", `{"type":"auth","token":"t","u":NaN}`, "invalid JSON"},
	{"bad escape", `{"type":"auth","token":"t","u":"\x"}`, "invalid JSON"},
	{"short unicode escape", `{"type":"auth","token":"t","u":"\u12"}`, "invalid JSON"},
	{"raw control char", "{\"type\":\"auth\",\"token\":\"t\",\"u\":\"a\tb\"}", "invalid JSON"},
	{"raw newline in key", "{\"type\":\"auth\",\"token\":\"t\",\"u\n\":1}", "invalid JSON"},
	{"array trailing comma", `{"type":"auth","token":"t","u":[1,]}`, "invalid JSON"},
	{"array missing comma", `{"type":"auth","token":"t","u":[1 2]}`, "invalid JSON"},
	{"object missing value", `{"type":"auth","token":"t","u":{"a"}}`, "invalid JSON"},
	{"mismatched brackets", `{"type":"auth","token":"t","u":[}`, "invalid JSON"},
	{"mismatched close", `{"type":"auth","token":"t","u":{"a":1]}`, "invalid JSON"},
	{"unclosed nested", `{"type":"auth","token":"t","u":[[1]}`, "invalid JSON"},
	{"too deep", `{"type":"message","data":` + nest(10000) + `}`, "nesting too deep"},
	{"duplicate type", `{"type":"auth","type":"message"}`, "duplicate key"},
	{"duplicate escaped key", `{"type":"auth","token":"t","t\u0079pe":"auth"}`, "duplicate key"},
	{"duplicate unknown key", `{"a":1,"type":"auth","token":"t","a":1}`, "duplicate key"},
	{"duplicate after many keys", `{` + manyKeys(20) + `"type":"auth","token":"t","kxxx":2}`, "duplicate key"},
	{"duplicate lone surrogates", `{"\ud800":1,"type":"auth","token":"t","\udc00":2}`, "duplicate key"},
	{"empty object", `{}`, "missing type"},
	{"capitalised type key", `{"Type":"auth","token":"t"}`, "missing type"},
	{"type number", `{"type":1,"token":"t"}`, "type not a string"},
	{"type null", `{"type":null,"token":"t"}`, "type not a string"},
	{"type array", `{"type":["auth"],"token":"t"}`, "type not a string"},
	{"type upper case", `{"type":"AUTH","token":"t"}`, "unknown type"},
	{"type with space", `{"type":"auth ","token":"t"}`, "unknown type"},
	{"type empty", `{"type":"","token":"t"}`, "unknown type"},
	{"type unknown", `{"type":"ping"}`, "unknown type"},
}

func TestDecodeClientMalformed(t *testing.T) {
	t.Parallel()
	tests := append(malformedCommon[:len(malformedCommon):len(malformedCommon)], []struct {
		name, in, err string
	}{
		{"server type", `{"type":"auth_ok","session":"s","sub":"u","exp":1}`, "unknown type"},
		{"missing token", `{"type":"auth"}`, "missing token"},
		{"token null", `{"type":"auth","token":null}`, "token not a string"},
		{"token number", `{"type":"auth","token":123}`, "token not a string"},
		{"token array", `{"type":"auth","token":["t"]}`, "token not a string"},
		{"token object", `{"type":"auth","token":{"t":"t"}}`, "token not a string"},
		{"token empty", `{"type":"auth","token":""}`, "empty token"},
		{"missing data", `{"type":"message","id":"1"}`, "missing data"},
		{"id number", `{"type":"message","id":1,"data":0}`, "id not a string"},
		{"id null", `{"type":"message","id":null,"data":0}`, "id not a string"},
		{"id too long", `{"type":"message","id":"` + id64 + `x","data":0}`, "id too long"},
		{"id too long decoded", `{"type":"message","id":"` + strings.Repeat(`\u00e9`, 32) + `x","data":0}`, "id too long"},
		{"data invalid", `{"type":"message","data":[1,}`, "invalid JSON"},
		{"message token number", `{"type":"message","token":1,"data":1}`, "token not a string"},
		{"message token empty", `{"type":"message","token":"","data":1}`, "empty token"},
		{"resume null", `{"type":"auth","token":"t","resume":null}`, "resume not an object"},
		{"resume number", `{"type":"auth","token":"t","resume":17}`, "resume not an object"},
		{"resume missing epoch", `{"type":"auth","token":"t","resume":{"seq":1}}`, "missing epoch"},
		{"resume epoch number", `{"type":"auth","token":"t","resume":{"epoch":1,"seq":1}}`, "epoch not a string"},
		{"resume epoch too long", `{"type":"auth","token":"t","resume":{"epoch":"` + id64 + `x","seq":1}}`, "epoch too long"},
		{"resume missing seq", `{"type":"auth","token":"t","resume":{"epoch":"e"}}`, "missing seq"},
		{"resume seq negative", `{"type":"auth","token":"t","resume":{"epoch":"e","seq":-1}}`, "seq not a non-negative integer"},
		{"resume seq fraction", `{"type":"auth","token":"t","resume":{"epoch":"e","seq":1.5}}`, "seq not a non-negative integer"},
		{"resume seq string", `{"type":"auth","token":"t","resume":{"epoch":"e","seq":"1"}}`, "seq not a non-negative integer"},
		{"resume duplicate seq", `{"type":"auth","token":"t","resume":{"epoch":"e","seq":1,"seq":2}}`, "duplicate key"},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkMalformed(t, clientCodec, tt.in, tt.err)
		})
	}
}

func TestDecodeServerValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want protocol.ServerFrame
	}{
		{"auth_ok", `{"type":"auth_ok","session":"s1","sub":"alice","exp":1700000000}`, protocol.ServerFrame{Type: "auth_ok", Session: "s1", Subject: "alice", Exp: 1700000000}},
		{"auth_ok empty strings", `{"exp":0,"sub":"","session":"","type":"auth_ok"}`, protocol.ServerFrame{Type: "auth_ok"}},
		{"auth_ok max exp", `{"type":"auth_ok","session":"s","sub":"u","exp":9223372036854775807}`, protocol.ServerFrame{Type: "auth_ok", Session: "s", Subject: "u", Exp: 1<<63 - 1}},
		{"auth_ok min exp", `{"type":"auth_ok","session":"s","sub":"u","exp":-9223372036854775808}`, protocol.ServerFrame{Type: "auth_ok", Session: "s", Subject: "u", Exp: -1 << 63}},
		{"auth_ok minus zero", `{"type":"auth_ok","session":"s","sub":"u","exp":-0}`, protocol.ServerFrame{Type: "auth_ok", Session: "s", Subject: "u"}},
		{"auth_ok escaped sub", `{"type":"auth_ok","session":"s","sub":"a\u2028\"b","exp":1}`, protocol.ServerFrame{Type: "auth_ok", Session: "s", Subject: "a\u2028\"b", Exp: 1}},
		{"reauth_required", `{"type":"reauth_required","exp":100,"deadline":130}`, protocol.ServerFrame{Type: "reauth_required", Exp: 100, Deadline: 130}},
		{"message", `{"type":"message","data":{"x":[1]}}`, protocol.ServerFrame{Type: "message", Data: json.RawMessage(`{"x":[1]}`)}},
		{"message null", `{"type":"message","data":null}`, protocol.ServerFrame{Type: "message", Data: json.RawMessage(`null`)}},
		{"message with position", `{"type":"message","epoch":"e","seq":42,"data":"x"}`, protocol.ServerFrame{Type: "message", Epoch: "e", Seq: 42, Data: json.RawMessage(`"x"`)}},
		{"message ignores epoch alone", `{"type":"message","epoch":"e","data":"x"}`, protocol.ServerFrame{Type: "message", Data: json.RawMessage(`"x"`)}},
		{"auth_ok with stream and resume", `{"type":"auth_ok","session":"s","sub":"u","exp":1,"epoch":"e9","seq":7,"resume":"ok"}`, protocol.ServerFrame{Type: "auth_ok", Session: "s", Subject: "u", Exp: 1, Stream: true, Epoch: "e9", Seq: 7, Resume: protocol.ResumeOK}},
		{"auth_ok empty stream", `{"type":"auth_ok","session":"s","sub":"u","exp":1,"epoch":"","seq":0}`, protocol.ServerFrame{Type: "auth_ok", Session: "s", Subject: "u", Exp: 1, Stream: true}},
		{"auth_ok resume lost", `{"type":"auth_ok","session":"s","sub":"u","exp":1,"epoch":"e9","seq":3,"resume":"lost"}`, protocol.ServerFrame{Type: "auth_ok", Session: "s", Subject: "u", Exp: 1, Stream: true, Epoch: "e9", Seq: 3, Resume: protocol.ResumeLost}},
		{"error", `{"type":"error","code":4429,"message":"slow down","ref":"m1"}`, protocol.ServerFrame{Type: "error", Code: 4429, Message: "slow down", Ref: "m1"}},
		{"error no ref", `{"type":"error","code":-1,"message":""}`, protocol.ServerFrame{Type: "error", Code: -1}},
		{"ignores other fields", `{"type":"error","code":1,"message":"m","exp":"x","data":1,"token":2}`, protocol.ServerFrame{Type: "error", Code: 1, Message: "m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkValid(t, serverCodec, tt.in, tt.want)
		})
	}
}

func TestDecodeServerMalformed(t *testing.T) {
	t.Parallel()
	tests := append(malformedCommon[:len(malformedCommon):len(malformedCommon)], []struct {
		name, in, err string
	}{
		{"client type", `{"type":"auth","token":"t"}`, "unknown type"},
		{"auth_ok missing session", `{"type":"auth_ok","sub":"u","exp":1}`, "missing session"},
		{"auth_ok session number", `{"type":"auth_ok","session":1,"sub":"u","exp":1}`, "session not a string"},
		{"auth_ok missing sub", `{"type":"auth_ok","session":"s","exp":1}`, "missing sub"},
		{"auth_ok sub null", `{"type":"auth_ok","session":"s","sub":null,"exp":1}`, "sub not a string"},
		{"auth_ok missing exp", `{"type":"auth_ok","session":"s","sub":"u"}`, "missing exp"},
		{"auth_ok exp string", `{"type":"auth_ok","session":"s","sub":"u","exp":"1"}`, "exp not an integer"},
		{"auth_ok exp null", `{"type":"auth_ok","session":"s","sub":"u","exp":null}`, "exp not an integer"},
		{"auth_ok exp fraction", `{"type":"auth_ok","session":"s","sub":"u","exp":1.0}`, "exp not an integer"},
		{"auth_ok exp exponent", `{"type":"auth_ok","session":"s","sub":"u","exp":1e3}`, "exp not an integer"},
		{"auth_ok exp overflow", `{"type":"auth_ok","session":"s","sub":"u","exp":9223372036854775808}`, "exp not an integer"},
		{"auth_ok exp underflow", `{"type":"auth_ok","session":"s","sub":"u","exp":-9223372036854775809}`, "exp not an integer"},
		{"auth_ok exp huge", `{"type":"auth_ok","session":"s","sub":"u","exp":100000000000000000000000}`, "exp not an integer"},
		{"reauth missing exp", `{"type":"reauth_required","deadline":1}`, "missing exp"},
		{"reauth missing deadline", `{"type":"reauth_required","exp":1}`, "missing deadline"},
		{"reauth deadline bool", `{"type":"reauth_required","exp":1,"deadline":true}`, "deadline not an integer"},
		{"message missing data", `{"type":"message"}`, "missing data"},
		{"message seq negative", `{"type":"message","epoch":"e","seq":-1,"data":1}`, "seq not a non-negative integer"},
		{"message seq null", `{"type":"message","epoch":"e","seq":null,"data":1}`, "seq not a non-negative integer"},
		{"message seq without epoch", `{"type":"message","seq":1,"data":1}`, "missing epoch"},
		{"auth_ok epoch number", `{"type":"auth_ok","session":"s","sub":"u","exp":1,"epoch":1,"seq":0}`, "epoch not a string"},
		{"auth_ok epoch without seq", `{"type":"auth_ok","session":"s","sub":"u","exp":1,"epoch":"e"}`, "missing seq"},
		{"auth_ok resume bool", `{"type":"auth_ok","session":"s","sub":"u","exp":1,"resume":true}`, "resume not a string"},
		{"auth_ok resume unknown", `{"type":"auth_ok","session":"s","sub":"u","exp":1,"resume":"maybe"}`, "unknown resume"},
		{"error missing code", `{"type":"error","message":"m"}`, "missing code"},
		{"error code fraction", `{"type":"error","code":1.5,"message":"m"}`, "code not an integer"},
		{"error missing message", `{"type":"error","code":1}`, "missing message"},
		{"error message number", `{"type":"error","code":1,"message":1}`, "message not a string"},
		{"error ref number", `{"type":"error","code":1,"message":"m","ref":1}`, "ref not a string"},
		{"error ref null", `{"type":"error","code":1,"message":"m","ref":null}`, "ref not a string"},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkMalformed(t, serverCodec, tt.in, tt.err)
		})
	}
}

// TestErrorTextsKnown keeps errorTexts, which the fuzz targets rely on, in
// step with the tables above.
func TestErrorTextsKnown(t *testing.T) {
	t.Parallel()
	for _, tt := range malformedCommon {
		assert.Contains(t, errorTexts, "protocol: malformed frame: "+tt.err, tt.name)
	}
}

// TestDepthMatchesEncodingJSON pins the nesting limit to json.Valid's.
func TestDepthMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, n := range []int{9998, 9999, 10000, 10001} {
		in := []byte(`{"type":"message","data":` + nest(n) + `}`)
		_, err := protocol.DecodeClient(in)
		assert.Equal(t, json.Valid(in), err == nil, "depth %d", n)
	}
	// Objects count the same as arrays.
	deep := `{"type":"message","data":` + strings.Repeat(`{"a":`, 9999) + "0" + strings.Repeat("}", 9999) + `}`
	_, err := protocol.DecodeClient([]byte(deep))
	require.NoError(t, err)
	deeper := `{"type":"message","data":` + strings.Repeat(`{"a":[`, 5000) + "0" + strings.Repeat("]}", 5000) + `}`
	_, err = protocol.DecodeClient([]byte(deeper))
	require.EqualError(t, err, "protocol: malformed frame: nesting too deep")
}

// TestDecodeAliasing checks what a caller may do with the input buffer:
// reuse it at once after DecodeServer, and after DecodeClient once it is
// done with Data (which aliases it; the strings do not).
func TestDecodeAliasing(t *testing.T) {
	t.Parallel()
	buf := []byte(`{"type":"message","id":"abc","data":{"text":"hi"}}`)
	f, err := protocol.DecodeClient(buf)
	require.NoError(t, err)
	s, err := protocol.DecodeServer([]byte(`{"type":"message","data":{"text":"hi"}}`))
	require.NoError(t, err)
	for i := range buf {
		buf[i] = 'x'
	}
	assert.Equal(t, "xxxxxxxxxxxxx", string(f.Data), "DecodeClient: Data aliases the input")
	assert.Equal(t, "abc", f.ID)
	assert.Equal(t, `{"text":"hi"}`, string(s.Data))
}

// TestErrorsNeverContainToken feeds malformed frames built around a token and
// requires that no error text contains the token or any piece of it.
func TestErrorsNeverContainToken(t *testing.T) {
	t.Parallel()
	const tok = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	frames := []string{
		`{"type":"auth","token":"` + tok + `"} trailing`,
		`{"type":"auth","token":"` + tok + `","token":"` + tok + `"}`,
		`{"type":"auth","token":["` + tok + `"]}`,
		`{"type":"auth","token":"` + tok + `"`,
		`{"type":"auth","token":"` + tok + "\xff\"}",
		`{"type":"` + tok + `","token":"x"}`,
		`{"type":"auth","` + tok + `":1,"` + tok + `":2}`,
		`{"type":"auth","token":` + tok + `}`,
		`"` + tok + `"`,
		`{"type":"message","id":"` + tok + tok + `","data":0}`,
		`{"type":"auth_ok","session":"` + tok + `","sub":1,"exp":1}`,
		`{"type":"error","code":"` + tok + `","message":"m"}`,
		`{"type":"auth","token":"` + tok + `\q"}`,
	}
	for _, in := range frames {
		_, errC := protocol.DecodeClient([]byte(in))
		require.Error(t, errC, in)
		_, errS := protocol.DecodeServer([]byte(in))
		for _, err := range []error{errC, errS} {
			if err == nil {
				continue // a valid server frame, e.g. a message with an id
			}
			require.Contains(t, errorTexts, err.Error())
			for i := 0; i+6 <= len(tok); i++ {
				require.NotContains(t, err.Error(), tok[i:i+6])
			}
		}
	}
}

func TestDecodeClientAllocs(t *testing.T) {
	// Not parallel: AllocsPerRun is disturbed by other goroutines' work.
	msg := []byte(`{"type":"message","id":"1","data":{"text":"hi"}}`)
	auth := []byte(`{"type":"auth","token":"a.b.c"}`)
	assert.Equal(t, 1.0, testing.AllocsPerRun(100, func() { _, _ = protocol.DecodeClient(auth) }), "auth: only the token")
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = protocol.DecodeClient(msg) }), "message: no data copy")
	bad := []byte(`{"type":"auth","type":"auth"}`)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = protocol.DecodeClient(bad) }), "rejecting allocates nothing")
}

func BenchmarkDecodeClient(b *testing.B) {
	frames := []struct{ name, in string }{
		{"message", `{"type":"message","id":"1","data":{"text":"hi"}}`},
		{"auth", `{"type":"auth","token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTcwMDAwMDAwMH0.` + strings.Repeat("s", 342) + `"}`},
		{"message_1KiB", `{"type":"message","id":"req-42","data":{"items":[` + strings.Repeat(`{"k":"value","n":12345,"ok":true},`, 30) + `null]}}`},
	}
	for _, f := range frames {
		in := []byte(f.in)
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, err := protocol.DecodeClient(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
