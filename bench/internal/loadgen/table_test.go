package loadgen

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/protocol"
)

func TestWriteTable(t *testing.T) {
	t.Parallel()
	gws := Row{Target: "gws", Mode: "echo", Conns: 100, Payload: 64, Msgs: 200000, Elapsed: 2 * time.Second,
		P50: 150 * time.Microsecond, P99: 1500 * time.Microsecond}
	ws := Row{Target: "wsauth", Mode: "echo", Conns: 100, Payload: 64, Msgs: 150000, Elapsed: 2 * time.Second,
		P50: 300 * time.Microsecond, P99: 3 * time.Millisecond, Errors: 2}
	idle := Row{Target: "wsauth", Mode: "idle", Conns: 10000, HeapPerConn: 9000.4, RSSPerConn: 12000}
	var b strings.Builder
	require.NoError(t, WriteTable(&b, []Row{gws, ws, Ratio(ws, gws), idle}))
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	require.Len(t, lines, 5)
	fields := func(i int) []string { return strings.Fields(lines[i]) }
	assert.Equal(t, []string{"target", "mode", "conns", "payload", "msgs", "msgs/s", "p50", "p99", "heap", "B/conn", "RSS", "B/conn", "errors"}, fields(0))
	assert.Equal(t, []string{"gws", "echo", "100", "64", "200000", "100.0k", "150.0µs", "1.50ms", "-", "-", "0"}, fields(1))
	assert.Equal(t, []string{"wsauth", "echo", "100", "64", "150000", "75.0k", "300.0µs", "3.00ms", "-", "-", "2"}, fields(2))
	assert.Equal(t, []string{"ratio", "echo", "100", "64", "-", "0.75x", "2.00x", "2.00x", "-", "-", "-"}, fields(3))
	assert.Equal(t, []string{"wsauth", "idle", "10000", "-", "-", "-", "-", "-", "9000", "12000", "0"}, fields(4))
	// Right-aligned columns: every line is as wide as the header.
	for _, l := range lines[1:] {
		assert.Equal(t, utf8.RuneCountInString(lines[0]), utf8.RuneCountInString(l), l)
	}
}

func TestFormatting(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "-", rate(0))
	assert.Equal(t, "999", rate(999))
	assert.Equal(t, "1.50M", rate(1.5e6))
	assert.Equal(t, "2.50s", dur(2500*time.Millisecond))
	assert.Equal(t, "12.3µs", dur(12300*time.Nanosecond))
	assert.Equal(t, "-", dur(0))
	assert.Equal(t, "1.25x", times(1.25))
	r := Row{Msgs: 10, Elapsed: 0}
	assert.Zero(t, r.Rate())
	assert.Zero(t, Ratio(r, Row{}).ratio.rate)
}

func TestMarkers(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano()
	for _, size := range []int{minPayload, 64, 1024} {
		f := appendClientMessage(nil, ts, 123456, size, "")
		assert.Len(t, f, size)
		gotTS, idx, ok := parseMarker(f)
		require.True(t, ok)
		assert.Equal(t, ts, gotTS)
		assert.Equal(t, 123456, idx)

		// With a token: the same data, and the token's member besides.
		const tok = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_"
		ft := appendClientMessage(nil, ts, 123456, size, tok)
		assert.Len(t, ft, size+len(tok)+len(`"token":"",`))
		cf, err := protocol.DecodeClient(ft)
		require.NoError(t, err)
		assert.Equal(t, tok, cf.Token)
		plain, err := protocol.DecodeClient(f)
		require.NoError(t, err)
		assert.Equal(t, plain.Data, cf.Data)

		data := appendPushData(nil, ts, 7, size)
		assert.Len(t, append(append([]byte(`{"type":"message","data":`), data...), '}'), size)
		gotTS, idx, ok = parseMarker(data)
		require.True(t, ok)
		assert.Equal(t, ts, gotTS)
		assert.Equal(t, 7, idx)
	}
	_, _, ok := parseMarker([]byte(`{"tick":1}`))
	assert.False(t, ok)
	_, _, ok = parseMarker([]byte(`"~zz"`))
	assert.False(t, ok)
	assert.Error(t, checkPayload(minPayload-1))
	assert.Equal(t, "abc", jsonString([]byte(`{"type":"auth_ok","session":"abc","sub":"x"}`), `"session":`))
	assert.Equal(t, "", jsonString([]byte(`{}`), `"session":`))
}
