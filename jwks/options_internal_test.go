package jwks

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCapBody covers bodies of unknown length, which the IdP (always
// sending Content-Length) does not exercise.
func TestCapBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		size    int
		max     int64
		wantErr bool
	}{
		{0, 10, false},
		{10, 10, false},
		{11, 10, true},
		{5000, 10, true},
		{5000, 4999, true},
		{5000, 5000, false},
	}
	for _, tt := range tests {
		body := &capBody{ReadCloser: io.NopCloser(strings.NewReader(strings.Repeat("x", tt.size))), left: tt.max}
		got, err := io.ReadAll(body)
		if tt.wantErr {
			require.ErrorIs(t, err, errBodyTooLarge, "size %d, max %d", tt.size, tt.max)
			assert.LessOrEqual(t, int64(len(got)), tt.max, "bytes let through")
			continue
		}
		require.NoError(t, err, "size %d, max %d", tt.size, tt.max)
		assert.Len(t, got, tt.size)
	}
}
