package protocol_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/protocol"
)

// closeCodes is the whole vocabulary with its expected name and retryability.
var closeCodes = []struct {
	code      protocol.CloseCode
	value     uint16
	name      string
	retryable bool
}{
	{protocol.CloseNormal, 1000, "normal closure", false},
	{protocol.CloseGoingAway, 1001, "going away", true},
	{protocol.CloseNoStatus, 1005, "no status", true},
	{protocol.CloseAbnormal, 1006, "abnormal closure", true},
	{protocol.CloseTryAgainLater, 1013, "try again later", true},
	{protocol.CloseTooLarge, 1009, "frame too large", false},
	{protocol.CloseInternal, 1011, "internal error", true},
	{protocol.CloseMalformed, 4400, "malformed frame", false},
	{protocol.CloseUnauthorized, 4401, "unauthorized", false},
	{protocol.CloseForbidden, 4403, "forbidden", false},
	{protocol.CloseAuthTimeout, 4408, "auth timeout", true},
	{protocol.CloseBufferOverflow, 4413, "buffer overflow", true},
	{protocol.CloseTooManyRequests, 4429, "too many requests", true},
	{protocol.CloseSessionExpired, 4440, "session expired", true},
}

func TestCloseCodeVocabulary(t *testing.T) {
	t.Parallel()
	for _, tt := range closeCodes {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.value, uint16(tt.code))
			assert.Equal(t, tt.name, tt.code.String())
			assert.Equal(t, tt.retryable, tt.code.Retryable())
		})
	}
}

func TestCloseCodeOutsideVocabulary(t *testing.T) {
	t.Parallel()
	for _, c := range []protocol.CloseCode{0, 1002, 1015, 3000, 4000, 4999, 65535} {
		assert.Equal(t, strconv.Itoa(int(c)), c.String())
		assert.False(t, c.Retryable(), "unknown code %d", c)
	}
}

func TestCloseErrorText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  *protocol.CloseError
		want string
	}{
		{&protocol.CloseError{Code: protocol.CloseUnauthorized, Reason: "token expired"}, "wsauth: closed 4401 (unauthorized): token expired"},
		{&protocol.CloseError{Code: protocol.CloseNormal, Reason: ""}, "wsauth: closed 1000 (normal closure)"},
		{&protocol.CloseError{Code: 4000, Reason: "custom"}, "wsauth: closed 4000 (4000): custom"},
		{&protocol.CloseError{}, "wsauth: closed 0 (0)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			assert.EqualError(t, tt.err, tt.want)
		})
	}
}

func TestCloseErrorIsAs(t *testing.T) {
	t.Parallel()
	forbidden := &protocol.CloseError{Code: protocol.CloseForbidden, Reason: "subject changed"}
	wrapped := fmt.Errorf("session s1: %w", forbidden)
	tests := []struct {
		name   string
		err    error
		target error
		want   bool
	}{
		{"same code, other reason", forbidden, &protocol.CloseError{Code: protocol.CloseForbidden, Reason: ""}, true},
		{"itself", forbidden, forbidden, true},
		{"wrapped", wrapped, &protocol.CloseError{Code: protocol.CloseForbidden, Reason: "x"}, true},
		{"other code", forbidden, &protocol.CloseError{Code: protocol.CloseUnauthorized, Reason: "subject changed"}, false},
		{"wrapped other code", wrapped, &protocol.CloseError{Code: protocol.CloseSessionExpired, Reason: ""}, false},
		{"plain error", forbidden, errors.New("wsauth: closed 4403 (forbidden): subject changed"), false},
		{"ErrMalformed", forbidden, protocol.ErrMalformed, false},
		{"nil target", forbidden, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, errors.Is(tt.err, tt.target))
		})
	}

	var ce *protocol.CloseError
	require.ErrorAs(t, wrapped, &ce)
	assert.Same(t, forbidden, ce)
	assert.False(t, errors.As(protocol.ErrMalformed, &ce))
}

func TestCloseReasonsFit(t *testing.T) {
	t.Parallel()
	assert.Equal(t, 123, protocol.MaxReasonLen, "RFC 6455: 125-byte control payload minus the 2-byte code")
	for _, tt := range closeCodes {
		assert.LessOrEqual(t, len(tt.code.String()), protocol.MaxReasonLen)
	}
}
