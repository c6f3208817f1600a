package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/jwks"
	"github.com/wsauth/wsauth/prommetrics"
)

// newMetrics returns a registry of the demo's own, with wsauth's metrics
// (prommetrics) and the Go runtime's and the process's, and the Observer
// to give the server. A registry of its own, not the default one, so that
// the tests' several demos in one process each count their own.
func newMetrics() (*prometheus.Registry, *prommetrics.Observer, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, err
	}
	obs, err := prommetrics.New(reg, prommetrics.Options{})
	if err != nil {
		return nil, nil, err
	}
	return reg, obs, nil
}

// mountOps serves the operator's view: /metrics, the probes /readyz and
// /livez, and the status page's numbers, /status.json. The demo serves
// them on its one listener for show; a real server keeps them on a
// listener only its infrastructure reaches (docs/operations.md).
func mountOps(mux *http.ServeMux, reg *prometheus.Registry, srv *wsauth.Server, v *jwks.Verifier, broker string) {
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Without a method in the pattern: the handlers answer another method
	// with 405 themselves.
	mux.Handle("/readyz", srv.ReadyHandler())
	mux.Handle("/livez", srv.LiveHandler())
	mux.Handle("GET /status.json", statusHandler(reg, srv, v, broker))
}
