package jwks

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestCapTransport covers bodies of unknown length (the IdP always sends
// Content-Length) and bodies that are not a JWK Set with keys.
func TestCapTransport(t *testing.T) {
	t.Parallel()
	set := `{"keys":[{"kty":"oct"}]}` // 24 bytes
	tests := []struct {
		name    string
		status  int
		body    string
		max     int64
		wantErr error
	}{
		{"set within the cap", 200, set, 100, nil},
		{"set exactly at the cap", 200, set, int64(len(set)), nil},
		{"one byte over", 200, set, int64(len(set)) - 1, errBodyTooLarge},
		{"huge body", 200, strings.Repeat("x", 5000), 100, errBodyTooLarge},
		{"empty object", 200, `{}`, 100, errNoKeys},
		{"null", 200, `null`, 100, errNoKeys},
		{"keys null", 200, `{"keys":null}`, 100, errNoKeys},
		{"no keys", 200, `{"keys":[]}`, 100, errNoKeys},
		{"keys not an array", 200, `{"keys":{}}`, 100, errNoKeys},
		{"garbage", 200, `<html>`, 100, errNoKeys},
		{"error status passes through", 503, `down`, 100, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := roundTripFunc(func(*http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: tt.status, ContentLength: -1,
					Body: io.NopCloser(strings.NewReader(tt.body))}, nil
			})
			tr := &capTransport{base: base, max: tt.max}
			resp, err := tr.RoundTrip(&http.Request{})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			got, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tt.body, string(got))
		})
	}
}
