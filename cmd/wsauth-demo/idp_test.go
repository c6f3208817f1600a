package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/wsauthtest"
)

// TestDevKeyShared: demos given one -dev-key file accept each other's
// tokens, whose issuer is the same on every node; the first creates the
// file, readable by its owner only, and later starts read it.
func TestDevKeyShared(t *testing.T) {
	t.Parallel()
	key := filepath.Join(t.TempDir(), "dev-key.pem")
	a := startDemo(t, "-dev-key", key, "-tick", "0")
	fi, err := os.Stat(key)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	raw, err := os.ReadFile(key)
	require.NoError(t, err)
	block, _ := pem.Decode(raw)
	require.NotNil(t, block)
	assert.Equal(t, "PRIVATE KEY", block.Type)

	b := startDemo(t, "-dev-key", key, "-tick", "0")
	tok := a.token(t, "alice", time.Minute)
	assert.Equal(t, defaultDevIssuer, claimsOf(t, tok)["iss"], "not a's URL")
	_, ok := b.login(t, tok)
	assert.Equal(t, "alice", ok["sub"], "b accepts a's token")
	_, ok = a.login(t, b.token(t, "bob", time.Minute))
	assert.Equal(t, "bob", ok["sub"], "and a b's")
	assert.Equal(t, jwksOf(t, a), jwksOf(t, b), "each serves the same key set itself")

	custom := startDemo(t, "-dev-key", key, "-issuer", "https://dev.example.invalid/", "-tick", "0")
	tok = custom.token(t, "carol", time.Minute)
	assert.Equal(t, "https://dev.example.invalid/", claimsOf(t, tok)["iss"])
	assert.Equal(t, jwksOf(t, a), jwksOf(t, custom), "the key file is read, not replaced")
}

// TestDevKeyCreatedOnce: nodes that start together and find no key file
// end up with one key, the first one written.
func TestDevKeyCreatedOnce(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "key.pem")
	const nodes = 8
	keys := make([]crypto.Signer, nodes)
	created := make([]bool, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			var err error
			keys[i], created[i], err = loadDevKey(path)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	n := 0
	for i := range nodes {
		if created[i] {
			n++
		}
		require.NotNil(t, keys[i])
		assert.True(t, keys[0].Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(keys[i].Public()), "node %d has another key", i)
	}
	assert.Equal(t, 1, n, "created once")
	leftovers, err := filepath.Glob(filepath.Join(filepath.Dir(path), ".wsauth-demo-key-*"))
	require.NoError(t, err)
	assert.Empty(t, leftovers, "temporary files are removed")
}

func TestDevKeyErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not a key"), 0o600))
	public := filepath.Join(dir, "public.pem")
	idp := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{})
	require.NoError(t, os.WriteFile(public, idp.PublicKeyPEM(), 0o600))
	for _, path := range []string{garbage, public, filepath.Join(dir, "missing", "key.pem"), dir} {
		var stderr bytes.Buffer
		err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-dev-key", path}, io.Discard, &stderr)
		assert.ErrorContains(t, err, "-dev-key", path)
	}
}

// claimsOf decodes a token's claims, without verifying it.
func claimsOf(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(b, &claims))
	return claims
}

// jwksOf fetches d's JWK Set.
func jwksOf(t *testing.T, d *demo) string {
	t.Helper()
	resp, err := httpClient.Get(d.base + wsauthtest.JWKSPath)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
