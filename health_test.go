package wsauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/jwks"
)

var _ wsauth.HealthChecker = (*jwks.Verifier)(nil)

// probe is a readiness or liveness endpoint of a server, on a real socket.
type probe struct{ url string }

func newProbe(t *testing.T, h http.Handler) probe {
	t.Helper()
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return probe{url: hs.URL}
}

type probeAnswer struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// get requests the probe and decodes its answer.
func (p probe) get(t *testing.T) (int, probeAnswer) {
	t.Helper()
	resp, err := http.Get(p.url)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	var a probeAnswer
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
	return resp.StatusCode, a
}

// TestReadyJWKSDown: a server whose identity provider is down when it
// starts is not ready, and says which issuer has no keys; it is alive all
// along. Once the provider answers, the probes themselves bring the keys
// (no client logs in to a server that is not ready) and it is ready.
func TestReadyJWKSDown(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{idpDown: true})
	ready, live := newProbe(t, h.srv.ReadyHandler()), newProbe(t, h.srv.LiveHandler())

	status, a := ready.get(t)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, "unavailable", a.Status)
	assert.Equal(t, "ok", a.Checks["server"])
	assert.Contains(t, a.Checks["verifier"], `"`+h.idp.Issuer()+`"`, "names the issuer without keys")
	assert.Contains(t, a.Checks["verifier"], "503", "and the last fetch's error")
	assert.NotContains(t, a.Checks, "broker", "no broker, no check")
	err := h.srv.Ready()
	require.ErrorIs(t, err, jwks.ErrKeysUnavailable)
	assert.Contains(t, err.Error(), "wsauth: verifier: ")

	status, a = live.get(t)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, probeAnswer{Status: "ok"}, a)

	h.idp.SetDown(false)
	require.Eventually(t, func() bool {
		h.clock.Advance(5 * time.Second) // past the keyless backoff
		status, _ := ready.get(t)
		return status == http.StatusOK
	}, 5*time.Second, 10*time.Millisecond)
	status, a = ready.get(t)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, probeAnswer{Status: "ok", Checks: map[string]string{"server": "ok", "verifier": "ok"}}, a)
	require.NoError(t, h.srv.Ready())
	h.loginT(t, h.idp.Token("ann", time.Hour))
}

// TestReadyShutdown: a server shutting down is not ready, and still alive.
func TestReadyShutdown(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	ready, live := newProbe(t, h.srv.ReadyHandler()), newProbe(t, h.srv.LiveHandler())
	status, _ := ready.get(t)
	require.Equal(t, http.StatusOK, status)

	require.NoError(t, h.srv.Shutdown(context.Background()))
	status, a := ready.get(t)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, "shutting down", a.Checks["server"])
	assert.Equal(t, "ok", a.Checks["verifier"])
	assert.EqualError(t, h.srv.Ready(), "wsauth: server: shutting down")
	status, _ = live.get(t)
	assert.Equal(t, http.StatusOK, status)
}

// checkedBroker is a broker.Memory whose members (or, with onBroker, the
// broker itself) report the health the test sets.
type checkedBroker struct {
	broker.Broker
	onBroker bool
	down     atomic.Bool
}

var errNoCluster = errors.New("cluster unreachable")

func (b *checkedBroker) health() error {
	if b.down.Load() {
		return errNoCluster
	}
	return nil
}

func (b *checkedBroker) Join(ctx context.Context, node string, h broker.Handler) (broker.Member, error) {
	m, err := b.Broker.Join(ctx, node, h)
	if err != nil || b.onBroker {
		return m, err
	}
	return checkedMember{Member: m, b: b}, nil
}

type checkedMember struct {
	broker.Member
	b *checkedBroker
}

func (m checkedMember) Health() error { return m.b.health() }

// brokerWithHealth is a checkedBroker that reports on the Broker.
type brokerWithHealth struct{ *checkedBroker }

func (b brokerWithHealth) Health() error { return b.health() }

// TestReadyBroker: with a broker, readiness follows the membership's
// health, found behind the Observer's timing wrapper too, or else the
// Broker's.
func TestReadyBroker(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		observer bool
		onBroker bool
	}{
		{"member", false, false},
		{"member observed", true, false},
		{"broker", false, true},
		{"broker observed", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cb := &checkedBroker{onBroker: tc.onBroker}
			h := newHostileEnv(t, hostileOptions{
				broker: func(now func() time.Time) broker.Broker {
					cb.Broker = broker.NewMemory(broker.MemoryOptions{Now: now})
					if tc.onBroker {
						return brokerWithHealth{cb}
					}
					return cb
				},
				server: func(o *wsauth.Options) {
					if tc.observer {
						o.Observer = &eventLog{}
					}
				},
			})
			ready := newProbe(t, h.srv.ReadyHandler())
			status, a := ready.get(t)
			assert.Equal(t, http.StatusOK, status)
			assert.Equal(t, map[string]string{"server": "ok", "verifier": "ok", "broker": "ok"}, a.Checks)

			cb.down.Store(true)
			status, a = ready.get(t)
			assert.Equal(t, http.StatusServiceUnavailable, status)
			assert.Equal(t, "cluster unreachable", a.Checks["broker"])
			assert.ErrorIs(t, h.srv.Ready(), errNoCluster)

			cb.down.Store(false)
			status, _ = ready.get(t)
			assert.Equal(t, http.StatusOK, status)
		})
	}
}

// plainVerifier is a Verifier that cannot tell its health.
type plainVerifier struct{ wsauth.Verifier }

// TestReadyWithoutCheckers: a Verifier and a Broker that cannot tell their
// health are not checked; the server is ready while it runs.
func TestReadyWithoutCheckers(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	srv, err := wsauth.New(wsauth.Options{Verifier: plainVerifier{h.verifier}, Broker: broker.NewMemory(broker.MemoryOptions{})})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	status, a := newProbe(t, srv.ReadyHandler()).get(t)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, map[string]string{"server": "ok"}, a.Checks)
	require.NoError(t, srv.Ready())
}

// TestHealthMethods: the probes answer GET and HEAD only.
func TestHealthMethods(t *testing.T) {
	t.Parallel()
	h := newHostileEnv(t, hostileOptions{})
	for name, handler := range map[string]http.Handler{"ready": h.srv.ReadyHandler(), "live": h.srv.LiveHandler()} {
		t.Run(name, func(t *testing.T) {
			p := newProbe(t, handler)
			resp, err := http.Post(p.url, "text/plain", nil)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
			assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))

			resp, err = http.Head(p.url)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Empty(t, body)
		})
	}
}
