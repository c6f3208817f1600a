package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wsauth/wsauth/bench/internal/loadgen"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runCmd runs the command in process and returns its table.
func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, args, &out, &errOut)
	if err != nil {
		t.Logf("stderr:\n%s", errOut.String())
	}
	return out.String(), err
}

// tableRows returns the table's rows (without the header) as fields.
func tableRows(t *testing.T, table string) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(table), "\n")
	require.GreaterOrEqual(t, len(lines), 2, "table:\n%s", table)
	require.Equal(t, "target", strings.Fields(lines[0])[0])
	var rows [][]string
	for _, l := range lines[1:] {
		rows = append(rows, strings.Fields(l))
	}
	return rows
}

func TestInProcessModes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args    []string
		targets []string
	}{
		{[]string{"-target", "both", "-mode", "echo", "-conns", "4", "-rounds", "2"}, []string{"gws", "wsauth", "wsauth/gws"}},
		{[]string{"-target", "all", "-mode", "echo", "-window", "64", "-conns", "2", "-rounds", "3"},
			[]string{"gws", "wsauth", "centrifuge", "wsauth/gws", "wsauth/centrifuge"}},
		{[]string{"-target", "wsauth,centrifuge", "-mode", "handshake", "-workers", "2"}, []string{"wsauth", "centrifuge", "wsauth/centrifuge"}},
		{[]string{"-target", "wsauth", "-mode", "push", "-conns", "3", "-payload", "1024"}, []string{"wsauth"}},
		{[]string{"-target", "gws", "-mode", "handshake", "-workers", "2"}, []string{"gws"}},
		{[]string{"-target", "wsauth", "-mode", "handshake", "-workers", "2", "-alg", "ES256"}, []string{"wsauth"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			table, err := runCmd(t, append(tc.args, "-duration", "300ms")...)
			require.NoError(t, err)
			rows := tableRows(t, table)
			require.Len(t, rows, len(tc.targets), "table:\n%s", table)
			for i, r := range rows {
				assert.Equal(t, tc.targets[i], r[0])
				if !strings.Contains(r[0], "/") { // not a ratio row
					assert.NotEqual(t, "-", r[5], "msgs/s of %s", r[0])
					assert.Equal(t, "0", r[len(r)-1], "errors of %s", r[0])
				}
			}
		})
	}
}

func TestExternalEndpoint(t *testing.T) {
	t.Parallel()
	srv, err := loadgen.StartWsauth(loadgen.ServerOptions{})
	require.NoError(t, err)
	defer func() { assert.NoError(t, srv.Close()) }()
	for _, mode := range []string{"echo", "handshake", "idle"} {
		table, err := runCmd(t, "-url", srv.URL, "-token-url", srv.TokenURL, "-mode", mode, "-conns", "3", "-duration", "300ms")
		require.NoError(t, err, mode)
		rows := tableRows(t, table)
		require.Len(t, rows, 1)
		assert.Equal(t, []string{srv.URL, mode}, rows[0][:2])
	}
}

func TestFlagErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-target", "nginx"},
		{"-target", "gws,gws"},
		{"-target", "centrifuge", "-mode", "push"},
		{"-window", "-1"},
		{"-mode", "flood"},
		{"-conns", "0"},
		{"-duration", "11m"},
		{"-payload", "10"},
		{"-url", "http://x"},
		{"-url", "ws://127.0.0.1:1/ws"},
		{"extra"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		assert.True(t, errors.Is(err, errUsage), "%q: %v", args, err)
		assert.Empty(t, out.String())
		assert.Contains(t, errOut.String(), "wsauth-bench", "%q", args)
	}
}
