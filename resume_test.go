package wsauth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// missWhileExpired lets c's one-minute token expire, sends it data while it
// is expired (buffered) and lets its grace run out: the session closes with
// 4440 and what it held is undelivered. It needs ReauthGrace 5s.
func missWhileExpired(t *testing.T, e *env, p wsauth.Principal, conns []*wstest.Conn, data ...string) {
	t.Helper()
	e.clock.Advance(time.Minute)
	for _, c := range conns {
		readType(t, c, "reauth_required")
	}
	for _, d := range data {
		n, err := e.srv.SendToPrincipals(context.Background(), json.RawMessage(d), p)
		require.NoError(t, err)
		require.Equal(t, len(conns), n)
	}
	e.clock.Advance(5 * time.Second)
	for _, c := range conns {
		e.expectClose(c, protocol.CloseSessionExpired, "session expired")
	}
}

func resumeEnv(t *testing.T, issuers int, configure func(*wsauth.Options)) *hostileEnv {
	return newHostileEnv(t, hostileOptions{issuers: issuers, server: func(o *wsauth.Options) {
		o.ResumeFor = time.Minute
		o.ReauthGrace = 5 * time.Second
		if configure != nil {
			configure(o)
		}
	}})
}

// readMessages reads n message frames and returns their data.
func readMessages(t *testing.T, c *wstest.Conn, n int) []string {
	t.Helper()
	var got []string
	for range n {
		b, err := json.Marshal(readType(t, c, "message")["data"])
		require.NoError(t, err)
		got = append(got, string(b))
	}
	return got
}

// TestResumeIsPerPrincipal is red team item 3: an OIDC subject is unique
// only within its issuer. What alice of issuer A missed goes to alice of A,
// never to alice of B; sends, Sessions and Revoke tell them apart too.
func TestResumeIsPerPrincipal(t *testing.T) {
	t.Parallel()
	h := resumeEnv(t, 2, nil)
	a, b := h.idps[0], h.idps[1]
	aliceA := wsauth.Principal{Issuer: a.Issuer(), Subject: "alice"}
	aliceB := wsauth.Principal{Issuer: b.Issuer(), Subject: "alice"}

	cA, _ := h.loginT(t, a.Token("alice", time.Minute))
	missWhileExpired(t, h.env, aliceA, []*wstest.Conn{cA}, `"for A"`)

	cB, _ := h.loginT(t, b.Token("alice", time.Hour))
	quiet(t, cB) // nothing of A's alice
	assert.Len(t, h.srv.Sessions(aliceB), 1)
	assert.Empty(t, h.srv.Sessions(aliceA))
	n, err := h.srv.SendToPrincipals(context.Background(), json.RawMessage(`"not for B"`), aliceA)
	require.NoError(t, err)
	assert.Zero(t, n)
	quiet(t, cB)

	cA2, _ := h.loginT(t, a.Token("alice", time.Hour))
	assert.Equal(t, []string{`"for A"`}, readMessages(t, cA2, 1))
	assert.Equal(t, 1, h.srv.Revoke(aliceA))
	h.expectClose(cA2, protocol.CloseForbidden, "session revoked")
	quiet(t, cB) // B's alice is not revoked
	assert.Len(t, h.srv.Sessions(aliceB), 1)
}

// TestResumeKeepsOneCopy is red team item 6: two tabs that both missed
// m1..m3 give the next connection m1..m3 once, not twice.
func TestResumeKeepsOneCopy(t *testing.T) {
	t.Parallel()
	h := resumeEnv(t, 1, nil)
	p := h.p("tabs")
	c1, _ := h.loginT(t, h.idp.Token("tabs", time.Minute))
	c2, _ := h.loginT(t, h.idp.Token("tabs", time.Minute))
	missWhileExpired(t, h.env, p, []*wstest.Conn{c1, c2}, "1", "2", "3")
	c3, _ := h.loginT(t, h.idp.Token("tabs", time.Hour))
	assert.Equal(t, []string{"1", "2", "3"}, readMessages(t, c3, 3))
	quiet(t, c3)
	assert.Empty(t, h.undeliveredFor("tabs"))
}

// TestResumeWindowIsPerMessage is red team item 18: a later close of the
// same principal does not extend the window of what was kept before it.
func TestResumeWindowIsPerMessage(t *testing.T) {
	t.Parallel()
	h := resumeEnv(t, 1, func(o *wsauth.Options) { o.ResumeFor = 2 * time.Minute })
	e := h.env
	c1, ok1 := h.loginT(t, h.idp.Token("win", time.Minute))
	c2, ok2 := h.loginT(t, h.idp.Token("win", 2*time.Minute))
	send := func(ok map[string]any, data string) {
		require.NoError(t, e.srv.Send(context.Background(), ok["session"].(string), json.RawMessage(data)))
	}
	e.clock.Advance(time.Minute) // c1 expired
	readType(t, c1, "reauth_required")
	send(ok1, `"old"`)
	e.clock.Advance(5 * time.Second) // t = 65 s: c1 closes, "old" is kept until 185 s
	e.expectClose(c1, protocol.CloseSessionExpired, "session expired")
	e.clock.Advance(55 * time.Second) // t = 120 s: c2 expired
	readType(t, c2, "reauth_required")
	send(ok2, `"new"`)
	e.clock.Advance(5 * time.Second) // t = 125 s: c2 closes, "new" is kept until 245 s
	e.expectClose(c2, protocol.CloseSessionExpired, "session expired")

	e.clock.Advance(time.Minute - time.Millisecond)
	assert.Empty(t, h.undeliveredFor("win"))
	e.clock.Advance(time.Millisecond) // t = 185 s
	assert.Equal(t, []string{`"old"`}, h.undeliveredFor("win"))
	c3, _ := h.loginT(t, h.idp.Token("win", time.Hour))
	assert.Equal(t, []string{`"new"`}, readMessages(t, c3, 1))
	quiet(t, c3)
}

// TestResumeTotalBound is red team item 8: the resume store is bounded in
// principals and in bytes; past either, the principal kept longest goes to
// OnUndelivered first.
func TestResumeTotalBound(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		configure func(*wsauth.Options)
	}{
		{"principals", func(o *wsauth.Options) { o.ResumeFor, o.ResumeMaxPrincipals = time.Hour, 3 }},
		// Each principal keeps one frame of about 1 KiB.
		{"bytes", func(o *wsauth.Options) { o.ResumeFor, o.ResumeMaxBytes = time.Hour, 3*1024+512 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := resumeEnv(t, 1, tc.configure)
			pad := fmt.Sprintf(`"%01000d"`, 0)
			for i := range 5 {
				sub := fmt.Sprintf("u%d", i)
				c, _ := h.loginT(t, h.idp.Token(sub, time.Minute))
				missWhileExpired(t, h.env, h.p(sub), []*wstest.Conn{c}, pad)
			}
			for i := range 5 {
				sub := fmt.Sprintf("u%d", i)
				got := h.undeliveredFor(sub)
				if i < 2 {
					assert.Len(t, got, 1, "%s, kept longest, is handed over", sub)
				} else {
					assert.Empty(t, got, "%s is still kept", sub)
				}
			}
			c, _ := h.loginT(t, h.idp.Token("u4", time.Hour))
			assert.Len(t, readMessages(t, c, 1), 1)
		})
	}
}
