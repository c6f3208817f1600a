package prommetrics_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/prommetrics"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// closeFrame is the payload of a client close frame with code.
func closeFrame(code int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(code)) }

// TestMetrics drives a server through real scenarios over real sockets,
// and checks the metrics that follow: refused upgrades, refused tokens,
// sessions by state, messages both ways, a reauthentication 3 s after
// reauth_required, an outbox overflow while expired with its undelivered
// messages, close codes a client chooses (bounded), and the gauges back to
// zero at the end. The scrape names no user, session, token or address.
func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, prommetrics.Options{CloseCodes: []protocol.CloseCode{4123}}, func(o *wsauth.Options) {
		o.BufferMessages = 4
		o.ReauthGrace = 5 * time.Second
	})
	httpURL := "http" + strings.TrimPrefix(e.url, "ws")
	var secrets []string // what no scrape may contain

	// Upgrades refused before any socket.
	_, err := wstest.Dial(e.url, http.Header{"Origin": {"http://evil.example"}})
	var he *wstest.HandshakeError
	require.ErrorAs(t, err, &he)
	require.Equal(t, http.StatusForbidden, he.Status)
	resp, err := http.Post(httpURL, "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	resp, err = http.Get(httpURL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 1.0, e.value("wsauth_upgrades_refused_total", "reason", "origin", "status", "403"))
	assert.Equal(t, 1.0, e.value("wsauth_upgrades_refused_total", "reason", "method", "status", "405"))
	assert.Equal(t, 1.0, e.value("wsauth_upgrades_refused_total", "reason", "upgrade", "status", "426"))
	assert.Equal(t, 3.0, e.value("wsauth_upgrades_refused_total"))
	assert.Zero(t, e.value("wsauth_sessions_opened_total"), "no socket, no session")

	// Refused tokens: the sessions close with 4401.
	for _, token := range []string{e.idp.Token("subject-x-51c9", -time.Minute), "not.a.token"} {
		secrets = append(secrets, token)
		c := e.open(nil)
		require.NoError(t, c.Auth(token))
		e.closedWith(c, 4401)
	}
	assert.Equal(t, 1.0, e.value("wsauth_token_verifications_total", "stage", "auth", "result", "refused", "reason", "token expired"))
	assert.Equal(t, 1.0, e.value("wsauth_token_verifications_total", "stage", "auth", "result", "refused", "reason", "malformed token"))
	assert.Equal(t, 2.0, e.value("wsauth_token_verification_duration_seconds", "stage", "auth"))
	e.eventually(2, "wsauth_sessions_closed_total", "code", "4401")
	e.eventually(0, "wsauth_sessions", "state", "pending")

	// A session: pending until its token is verified, then active.
	annToken := e.idp.Token("subject-ann-7e21", time.Minute)
	secrets = append(secrets, annToken, "subject-ann-7e21")
	ann := e.open(nil)
	assert.Equal(t, 1.0, e.value("wsauth_sessions", "state", "pending"))
	require.NoError(t, ann.Auth(annToken))
	ok := e.read(ann, "auth_ok")
	secrets = append(secrets, ok["session"].(string))
	assert.Equal(t, 0.0, e.value("wsauth_sessions", "state", "pending"))
	assert.Equal(t, 1.0, e.value("wsauth_sessions", "state", "active"))
	assert.Equal(t, 3.0, e.value("wsauth_sessions_opened_total"))
	assert.Equal(t, 1.0, e.value("wsauth_token_verifications_total", "stage", "auth", "result", "accepted"))

	// A message in, its echo out.
	require.NoError(t, ann.WriteText(`{"type":"message","data":1}`))
	e.read(ann, "message")
	assert.Equal(t, 1.0, e.value("wsauth_messages_received_total"))
	e.eventually(1, "wsauth_messages_sent_total")

	// Reauthentication, 3 s after reauth_required.
	e.clock.Advance(30 * time.Second)
	e.read(ann, "reauth_required")
	e.clock.Advance(3 * time.Second)
	fresh := e.idp.Token("subject-ann-7e21", time.Hour)
	secrets = append(secrets, fresh)
	require.NoError(t, ann.Auth(fresh))
	e.read(ann, "auth_ok")
	assert.Equal(t, 1.0, e.value("wsauth_reauth_lag_seconds"))
	assert.Equal(t, 3.0, e.histogramSum("wsauth_reauth_lag_seconds"))
	assert.Equal(t, 1.0, e.value("wsauth_token_verifications_total", "stage", "reauth", "result", "accepted"))

	// Expired, then an overflow: 4413, and its messages undelivered.
	boToken := e.idp.Token("subject-bo-90d3", time.Minute)
	secrets = append(secrets, boToken, "subject-bo-90d3")
	bo, _ := e.login(boToken)
	e.clock.Advance(time.Minute)
	e.read(bo, "reauth_required")
	e.eventually(1, "wsauth_sessions", "state", "expired")
	for range 5 {
		_, _ = e.srv.SendToPrincipals(context.Background(), json.RawMessage(`1`), e.p("subject-bo-90d3"))
	}
	assert.Equal(t, 4.0, e.value("wsauth_outbound_queued_messages"), "held while expired")
	assert.Equal(t, 4.0*float64(len(`{"type":"message","data":1}`)), e.value("wsauth_outbound_queued_bytes"))
	e.closedWith(bo, int(protocol.CloseBufferOverflow))
	e.eventually(1, "wsauth_sessions_closed_total", "code", "4413")
	assert.Equal(t, 1.0, e.value("wsauth_outbound_overflows_total"))
	assert.Equal(t, 5.0, e.value("wsauth_messages_undelivered_total"))
	assert.Equal(t, 0.0, e.value("wsauth_sessions", "state", "expired"))
	assert.Equal(t, 0.0, e.value("wsauth_outbound_queued_messages"))

	// Close codes that clients choose: the application's listed one has a
	// label of its own, any other is "other".
	for _, code := range []int{4123, 4999, 4998, 1000} {
		c, _ := e.login(e.idp.Token("subject-cy-1b2f", time.Hour))
		require.NoError(t, c.WriteFrame(true, wstest.OpClose, closeFrame(code)))
	}
	e.eventually(1, "wsauth_sessions_closed_total", "code", "4123")
	e.eventually(2, "wsauth_sessions_closed_total", "code", "other")
	e.eventually(1, "wsauth_sessions_closed_total", "code", "1000")
	assert.Empty(t, e.series("wsauth_sessions_closed_total", "code", "4999"))

	require.NoError(t, ann.WriteFrame(true, wstest.OpClose, closeFrame(1000)))
	e.eventually(2, "wsauth_sessions_closed_total", "code", "1000")
	for _, st := range []string{"pending", "active", "expired"} {
		e.eventually(0, "wsauth_sessions", "state", st)
	}
	assert.Equal(t, 0.0, e.value("wsauth_outbound_queued_messages"))
	assert.Equal(t, 0.0, e.value("wsauth_outbound_queued_bytes"))

	text := e.scrape()
	assert.Contains(t, text, `wsauth_sessions_closed_total{code="4413"} 1`)
	assert.Contains(t, text, `wsauth_token_verifications_total{reason="token expired",result="refused",stage="auth"} 1`)
	for _, s := range append(secrets, "127.0.0.1", "subject-") {
		assert.NotContains(t, text, s)
		for seg := range strings.SplitSeq(s, ".") {
			if len(seg) >= 8 {
				assert.NotContains(t, text, seg, "a part of a token")
			}
		}
	}
}

// flakyBroker is a broker.Memory whose Publish and PutOnce fail while
// fail is set.
type flakyBroker struct {
	broker.Broker
	fail atomic.Bool
}

func (b *flakyBroker) Join(ctx context.Context, node string, h broker.Handler) (broker.Member, error) {
	m, err := b.Broker.Join(ctx, node, h)
	return flakyMember{Member: m, b: b}, err
}

type flakyMember struct {
	broker.Member
	b *flakyBroker
}

func (m flakyMember) Publish(ctx context.Context, p session.Principal, data json.RawMessage) (protocol.Position, error) {
	if m.b.fail.Load() {
		return protocol.Position{}, broker.ErrUnavailable
	}
	return m.Member.Publish(ctx, p, data)
}

func (m flakyMember) PutOnce(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if m.b.fail.Load() {
		return broker.ErrUnavailable
	}
	return m.Member.PutOnce(ctx, key, value, ttl)
}

// TestBrokerMetrics: every call to the broker is counted by operation and
// outcome and timed; a resume counts the messages it queues.
func TestBrokerMetrics(t *testing.T) {
	t.Parallel()
	fb := &flakyBroker{}
	e := newEnv(t, prommetrics.Options{}, func(o *wsauth.Options) {
		fb.Broker = broker.NewMemory(broker.MemoryOptions{Now: o.Clock.Now})
		o.Broker = fb
	})
	ann := e.p("subject-ann-7e21")
	c, ok := e.login(e.idp.Token(ann.Subject, time.Hour))
	at := protocol.Position{Epoch: ok["epoch"].(string), Seq: uint64(ok["seq"].(float64))}
	assert.Equal(t, 1.0, e.value("wsauth_broker_calls_total", "operation", "interest", "outcome", "ok"))
	require.NoError(t, c.WriteFrame(true, wstest.OpClose, closeFrame(1000)))
	e.eventually(2, "wsauth_broker_calls_total", "operation", "interest", "outcome", "ok")

	for range 2 {
		_, err := e.srv.SendToPrincipals(context.Background(), json.RawMessage(`1`), ann)
		require.NoError(t, err)
	}
	fb.fail.Store(true)
	_, err := e.srv.SendToPrincipals(context.Background(), json.RawMessage(`1`), ann)
	require.ErrorIs(t, err, broker.ErrUnavailable)
	fb.fail.Store(false)
	assert.Equal(t, 2.0, e.value("wsauth_broker_calls_total", "operation", "publish", "outcome", "ok"))
	assert.Equal(t, 1.0, e.value("wsauth_broker_calls_total", "operation", "publish", "outcome", "error"))
	assert.Equal(t, 3.0, e.value("wsauth_broker_call_duration_seconds", "operation", "publish"))

	// The two messages it missed, from the stream's history.
	c = e.open(nil)
	require.NoError(t, c.WriteText(string(protocol.AppendClient(nil, protocol.ClientFrame{
		Type: protocol.TypeAuth, Token: e.idp.Token(ann.Subject, time.Hour), Resume: &at}))))
	ok = e.read(c, "auth_ok")
	require.Equal(t, protocol.ResumeOK, ok["resume"])
	e.read(c, "message")
	e.read(c, "message")
	assert.Equal(t, 2.0, e.value("wsauth_messages_resumed_total"))
	assert.Positive(t, e.value("wsauth_broker_calls_total", "operation", "history", "outcome", "ok"))
	e.eventually(2, "wsauth_messages_sent_total")
}

// TestTicketMetrics: the upgrade tickets' calls to the broker are counted:
// put_once at the exchange (error while the broker fails, and the
// exchange answers 503), take_once at the upgrade, where a ticket used
// once already is an answer (ok), not a failure.
func TestTicketMetrics(t *testing.T) {
	t.Parallel()
	fb := &flakyBroker{}
	e := newEnv(t, prommetrics.Options{}, func(o *wsauth.Options) {
		fb.Broker = broker.NewMemory(broker.MemoryOptions{Now: o.Clock.Now})
		o.Broker = fb
	})
	exchange := func() (int, string) {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, "/ticket", nil)
		r.Header.Set("Authorization", "Bearer "+e.idp.Token("subject-tom-51c0", time.Hour))
		w := httptest.NewRecorder()
		e.srv.TicketHandler().ServeHTTP(w, r)
		var answer struct{ Ticket string }
		_ = json.Unmarshal(w.Body.Bytes(), &answer)
		return w.Code, answer.Ticket
	}

	fb.fail.Store(true)
	status, _ := exchange()
	assert.Equal(t, http.StatusServiceUnavailable, status)
	fb.fail.Store(false)
	assert.Equal(t, 1.0, e.value("wsauth_broker_calls_total", "operation", "put_once", "outcome", "error"))
	status, ticket := exchange()
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, 1.0, e.value("wsauth_broker_calls_total", "operation", "put_once", "outcome", "ok"))
	assert.Equal(t, 2.0, e.value("wsauth_broker_call_duration_seconds", "operation", "put_once"))

	c, err := wstest.Dial(e.url+"?ticket="+ticket, nil)
	require.NoError(t, err)
	defer c.Close()
	e.read(c, "auth_ok")
	assert.Equal(t, 1.0, e.value("wsauth_broker_calls_total", "operation", "take_once", "outcome", "ok"))

	_, err = wstest.Dial(e.url+"?ticket="+ticket, nil)
	var he *wstest.HandshakeError
	require.ErrorAs(t, err, &he, "a used ticket")
	assert.Equal(t, http.StatusUnauthorized, he.Status)
	assert.Equal(t, 2.0, e.value("wsauth_broker_calls_total", "operation", "take_once", "outcome", "ok"))
	assert.Empty(t, e.series("wsauth_broker_calls_total", "operation", "take_once", "outcome", "error"))
	assert.NotContains(t, e.scrape(), ticket)
}

// TestOptions: New refuses close codes no application may choose and
// reasons that are no close reasons; several values that are fine get
// their own labels.
func TestOptions(t *testing.T) {
	t.Parallel()
	for _, opts := range []prommetrics.Options{
		{CloseCodes: []protocol.CloseCode{4401, 1000}},
		{CloseCodes: []protocol.CloseCode{2999}},
		{CloseCodes: []protocol.CloseCode{5000}},
		{Reasons: []string{""}},
		{Reasons: []string{"other"}},
		{Reasons: []string{strings.Repeat("x", protocol.MaxReasonLen+1)}},
		{Reasons: []string{"\xff"}},
	} {
		_, err := prommetrics.New(prometheus.NewRegistry(), opts)
		assert.Error(t, err, "%+v", opts)
	}

	reg := prometheus.NewRegistry()
	o, err := prommetrics.New(reg, prommetrics.Options{
		CloseCodes: []protocol.CloseCode{3000, 4999, 4401},
		Reasons:    []string{"account locked", "token expired"},
	})
	require.NoError(t, err)
	for _, ev := range []wsauth.Event{
		{Kind: wsauth.Closed, Code: 3000},
		{Kind: wsauth.Closed, Code: 4999},
		{Kind: wsauth.Closed, Code: 4998},
		{Kind: wsauth.Verified, Stage: "auth", Reason: "account locked"},
		{Kind: wsauth.Verified, Stage: "auth", Reason: "account deleted"},
		{Kind: wsauth.Verified, Stage: "new stage", Reason: "token expired"},
		{Kind: wsauth.Refused, Reason: "new reason", Status: 418},
		{Kind: wsauth.BrokerCall, Stage: "NewMethod", Failed: true},
	} {
		o.Observe(ev)
	}
	e := &env{t: t, reg: reg}
	assert.Equal(t, 1.0, e.value("wsauth_sessions_closed_total", "code", "3000"))
	assert.Equal(t, 1.0, e.value("wsauth_sessions_closed_total", "code", "4999"))
	assert.Equal(t, 1.0, e.value("wsauth_sessions_closed_total", "code", "other"))
	assert.Equal(t, 1.0, e.value("wsauth_token_verifications_total", "reason", "account locked"))
	assert.Equal(t, 1.0, e.value("wsauth_token_verifications_total", "stage", "auth", "reason", "other"))
	assert.Equal(t, 1.0, e.value("wsauth_token_verifications_total", "stage", "other", "reason", "token expired"))
	assert.Equal(t, 1.0, e.value("wsauth_upgrades_refused_total", "reason", "other", "status", "other"))
	assert.Equal(t, 1.0, e.value("wsauth_broker_calls_total", "operation", "other", "outcome", "error"))
}

// TestRegister: a registry takes one Observer; a New that fails leaves
// nothing of its own registered.
func TestRegister(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	_, err := prommetrics.New(reg, prommetrics.Options{})
	require.NoError(t, err)
	_, err = prommetrics.New(reg, prommetrics.Options{})
	var are prometheus.AlreadyRegisteredError
	require.ErrorAs(t, err, &are)

	// A metric of the same name, registered before: New fails at it, and
	// takes back what it registered before.
	reg = prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "wsauth_reauth_lag_seconds", Help: "taken"}))
	_, err = prommetrics.New(reg, prommetrics.Options{})
	require.Error(t, err)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, 1)
	assert.Equal(t, "wsauth_reauth_lag_seconds", mfs[0].GetName())

	// Two servers' metrics apart, in one registry.
	reg = prometheus.NewRegistry()
	for _, name := range []string{"a", "b"} {
		_, err := prommetrics.New(prometheus.WrapRegistererWith(prometheus.Labels{"server": name}, reg), prommetrics.Options{})
		require.NoError(t, err)
	}
}
