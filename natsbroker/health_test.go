package natsbroker_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/internal/natstest"
	"github.com/wsauth/wsauth/natsbroker"
)

var _ wsauth.HealthChecker = (*natsbroker.Broker)(nil)

// TestHealth: a member and its Broker are healthy while their connection
// to NATS is up, not while the NATS server is down, healthy again once it
// is back; a member that left is not.
func TestHealth(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	b := newBroker(t, s.URL(), natsbroker.Options{})
	m, _ := join(t, b)
	hc := m.(wsauth.HealthChecker)
	require.NoError(t, hc.Health())
	require.NoError(t, b.Health())

	s.Stop()
	eventually(t, "unhealthy member", func() bool { return hc.Health() != nil })
	err := hc.Health()
	assert.ErrorIs(t, err, broker.ErrUnavailable)
	assert.Contains(t, err.Error(), "not connected to NATS (RECONNECTING)")
	assert.ErrorIs(t, b.Health(), broker.ErrUnavailable)

	s.Start()
	eventually(t, "healthy member", func() bool { return hc.Health() == nil })
	require.NoError(t, b.Health())

	require.NoError(t, m.Leave())
	assert.ErrorIs(t, hc.Health(), broker.ErrUnavailable, "left")
	assert.NoError(t, b.Health(), "the Broker's connection is still up")
}

// TestReadyOnNATS: a wsauth Server clustered on NATS answers its readiness
// probe with 503 and the broker's error while the NATS server is down, and
// 200 once it is back; its liveness probe says 200 all along.
func TestReadyOnNATS(t *testing.T) {
	t.Parallel()
	c := newWSCluster(t, 1)
	nd := c.nodes[0]
	mux := http.NewServeMux()
	mux.Handle("GET /readyz", nd.srv.ReadyHandler())
	mux.Handle("GET /livez", nd.srv.LiveHandler())
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	get := func(path string) (int, map[string]string) {
		t.Helper()
		resp, err := http.Get(hs.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		var a struct {
			Checks map[string]string `json:"checks"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
		return resp.StatusCode, a.Checks
	}

	status, checks := get("/readyz")
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, map[string]string{"server": "ok", "verifier": "ok", "broker": "ok"}, checks)

	c.nats.Stop()
	eventually(t, "503 from /readyz", func() bool { status, _ := get("/readyz"); return status == http.StatusServiceUnavailable })
	_, checks = get("/readyz")
	assert.Contains(t, checks["broker"], "not connected to NATS")
	assert.Equal(t, "ok", checks["verifier"])
	status, _ = get("/livez")
	assert.Equal(t, http.StatusOK, status)

	c.nats.Start()
	eventually(t, "200 from /readyz", func() bool { status, _ := get("/readyz"); return status == http.StatusOK })
	c.login(t, nd, "alice", nil)
	require.NoError(t, nd.srv.Ready())
}
