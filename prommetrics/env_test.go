package prommetrics_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/prommetrics"
	"github.com/wsauth/wsauth/wsauthtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// wait bounds every wait for something asynchronous.
const wait = 5 * time.Second

// env is a wsauth.Server with a prommetrics.Observer on a loopback
// httptest server, verifying the tokens of a real IdP through jwks over
// HTTP; server, verifier and IdP share a fake clock. The registry is
// scraped over HTTP too.
type env struct {
	t         *testing.T
	clock     *wsauthtest.Clock
	idp       *wsauthtest.IdP
	reg       *prometheus.Registry
	srv       *wsauth.Server
	url       string // the WebSocket endpoint
	scrapeURL string
}

func newEnv(t *testing.T, opts prommetrics.Options, configure func(*wsauth.Options)) *env {
	t.Helper()
	clock := wsauthtest.NewClock(epoch)
	idp := wsauthtest.NewIdP(t, wsauthtest.IdPOptions{Clock: clock})
	reg := prometheus.NewRegistry()
	obs, err := prommetrics.New(reg, opts)
	require.NoError(t, err)
	o := wsauth.Options{
		Verifier: idp.Verifier(t),
		Clock:    clock,
		Observer: obs,
		Logger:   slog.New(slog.DiscardHandler),
		OnMessage: func(_ context.Context, s *wsauth.Session, m wsauth.Message) error {
			return s.Reply(m.Data)
		},
		OnUndelivered: func(wsauth.Principal, []json.RawMessage) {},
	}
	if configure != nil {
		configure(&o)
	}
	srv, err := wsauth.New(o)
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		hs.Close()
		ms.Close()
	})
	return &env{t: t, clock: clock, idp: idp, reg: reg, srv: srv,
		url: "ws" + strings.TrimPrefix(hs.URL, "http"), scrapeURL: ms.URL}
}

func (e *env) p(sub string) wsauth.Principal {
	return wsauth.Principal{Issuer: e.idp.Issuer(), Subject: sub}
}

// open dials and waits until the server's read loop runs.
func (e *env) open(header http.Header) *wstest.Conn {
	e.t.Helper()
	c, err := wstest.Dial(e.url, header)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { c.Close() })
	_, err = c.Sync()
	require.NoError(e.t, err)
	return c
}

// login authenticates a new connection with token and returns it with
// its auth_ok frame.
func (e *env) login(token string) (*wstest.Conn, map[string]any) {
	e.t.Helper()
	c := e.open(nil)
	require.NoError(e.t, c.Auth(token))
	ok := e.read(c, "auth_ok")
	return c, ok
}

// read reads the next frame, which must be of type typ.
func (e *env) read(c *wstest.Conn, typ string) map[string]any {
	e.t.Helper()
	m, err := c.ReadJSON()
	require.NoError(e.t, err)
	require.Equal(e.t, typ, m["type"], "frame: %v", m)
	return m
}

// closedWith reads until the server's close frame, which must have code.
func (e *env) closedWith(c *wstest.Conn, code int) {
	e.t.Helper()
	cl, _, err := c.ReadClose()
	require.NoError(e.t, err)
	require.Equal(e.t, code, cl.Code, "reason %q", cl.Reason)
}

// series returns the series of the metric name whose labels include
// labels (name, value pairs), from a gather of the registry.
func (e *env) series(name string, labels ...string) []*dto.Metric {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(e.t, err)
	var out []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			out = append(out, m)
		}
	}
	return out
}

// value adds up the series of name with labels: the values of counters
// and gauges, the sample counts of histograms.
func (e *env) value(name string, labels ...string) float64 {
	e.t.Helper()
	v := 0.0
	for _, m := range e.series(name, labels...) {
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		}
	}
	return v
}

// histogramSum adds up the sample sums of the histogram series of name
// with labels.
func (e *env) histogramSum(name string, labels ...string) float64 {
	e.t.Helper()
	v := 0.0
	for _, m := range e.series(name, labels...) {
		v += m.GetHistogram().GetSampleSum()
	}
	return v
}

// eventually waits until value(name, labels) is want.
func (e *env) eventually(want float64, name string, labels ...string) {
	e.t.Helper()
	require.Eventually(e.t, func() bool { return e.value(name, labels...) == want },
		wait, 5*time.Millisecond, "%s%v: %v, want %v", name, labels, e.value(name, labels...), want)
}

// scrape returns the registry's text exposition, as a scrape gets it.
func (e *env) scrape() string {
	e.t.Helper()
	resp, err := http.Get(e.scrapeURL)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	require.Equal(e.t, http.StatusOK, resp.StatusCode, "%s", b)
	return string(b)
}
