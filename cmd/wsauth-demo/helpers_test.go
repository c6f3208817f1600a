package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/testlog"
	"github.com/wsauth/wsauth/internal/wstest"
)

// httpClient keeps no idle connections, so that no goroutine outlives a test.
var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// demo is one run of the command, in process, on a free loopback port.
type demo struct {
	base   string // http://127.0.0.1:PORT
	ws     string // ws://127.0.0.1:PORT/ws
	logs   *testlog.Buffer
	cancel context.CancelFunc
	done   chan error

	once sync.Once
	err  error
}

// startDemo runs the command with args until the test ends.
func startDemo(t *testing.T, args ...string) *demo {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWriter{lines: make(chan string, 4)}
	d := &demo{logs: &testlog.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	args = append([]string{"-addr", "127.0.0.1:0", "-log-level", "debug"}, args...)
	go func() { d.done <- run(ctx, args, out, d.logs) }()
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("run: %v", err)
		}
		if t.Failed() {
			t.Logf("demo logs:\n%s", d.logs)
		}
	})
	select {
	case line := <-out.lines:
		base, ok := strings.CutPrefix(line, "wsauth-demo listening on ")
		require.True(t, ok, "first stdout line: %q", line)
		d.base = base
		d.ws = "ws" + strings.TrimPrefix(base, "http") + "/ws"
	case err := <-d.done:
		d.once.Do(func() { d.err = err })
		t.Fatalf("run returned before listening: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no listening line within 10s")
	}
	return d
}

// stop cancels the run's context and returns what run returned.
func (d *demo) stop() error {
	d.once.Do(func() {
		d.cancel()
		select {
		case d.err = <-d.done:
		case <-time.After(15 * time.Second):
			d.err = errors.New("run did not return within 15s of cancellation")
		}
	})
	return d.err
}

// lineWriter hands each line written to it to a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   []byte
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.lines <- string(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

// post POSTs body to the demo's /token and returns the status and the
// decoded JSON answer.
func (d *demo) post(t *testing.T, body string) (int, map[string]any) {
	t.Helper()
	resp, err := httpClient.Post(d.base+"/token", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var m map[string]any
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.Header.Get("Content-Type") == "application/json" {
		require.NoError(t, json.Unmarshal(raw, &m), "body %q", raw)
	}
	return resp.StatusCode, m
}

// token mints a token for sub from the demo's development IdP.
func (d *demo) token(t *testing.T, sub string, ttl time.Duration) string {
	t.Helper()
	status, m := d.post(t, fmt.Sprintf(`{"sub":%q,"ttl":%q}`, sub, ttl))
	require.Equal(t, http.StatusOK, status, "answer %v", m)
	tok, _ := m["token"].(string)
	require.NotEmpty(t, tok)
	return tok
}

// login opens a socket offering wsauth.v1 and authenticates with tok.
func (d *demo) login(t *testing.T, tok string) (*wstest.Conn, map[string]any) {
	t.Helper()
	c, err := wstest.Dial(d.ws, http.Header{"Sec-WebSocket-Protocol": {"wsauth.v1"}})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	assert.Equal(t, "wsauth.v1", c.Subprotocol)
	require.NoError(t, c.Auth(tok))
	ok := readType(t, c, "auth_ok")
	return c, ok
}

func readType(t *testing.T, c *wstest.Conn, typ string) map[string]any {
	t.Helper()
	m, err := c.ReadJSON()
	require.NoError(t, err)
	require.Equal(t, typ, m["type"], "frame: %v", m)
	return m
}

// tickOf returns N of a {"type":"message","data":{"tick":N}} frame, or 0.
func tickOf(m map[string]any) int {
	if m["type"] != "message" {
		return 0
	}
	data, _ := m["data"].(map[string]any)
	n, _ := data["tick"].(float64)
	return int(n)
}
