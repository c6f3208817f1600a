package session_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wsauth/wsauth/session"
)

func TestStateString(t *testing.T) {
	t.Parallel()
	for st, want := range map[session.State]string{
		session.Pending: "pending", session.Active: "active", session.Expired: "expired", session.Closed: "closed",
	} {
		assert.Equal(t, want, st.String())
	}
	assert.Equal(t, "invalid", session.State(9).String())
}
