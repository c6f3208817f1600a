// Package prommetrics exports what a wsauth.Server does as Prometheus
// metrics: sessions by state, refused upgrades, token verifications and
// their latency, reauthentication lag, outbound queues and overflows,
// messages in and out, close codes and broker calls. It is the only
// package of wsauth that imports github.com/prometheus/client_golang, so
// a program that does not import it does not link Prometheus. Prometheus
// is what Go services are most often scraped with, and an OpenTelemetry
// Collector can scrape the same endpoint.
//
// An Observer is a wsauth.Observer: set it as wsauth.Options.Observer,
// and serve the registry it was registered with (promhttp.HandlerFor). The
// metrics are listed, with what to alert on, in docs/operations.md. Their
// labels take values from fixed vocabularies (see Options): no metric
// names a user, a session, a token or an address.
//
// # Goroutines and cost
//
// The server calls Observe on its own goroutines, many times per message
// (queued, written, read), sometimes under a session's lock. Observe never
// blocks or allocates once a series exists: the metrics of messages and
// sessions are atomic integers, each on its own cache line, read when
// scraped; a labelled series is made by the first event that needs it and
// then found with one atomic load, without hashing its label values. The
// per-event cost is measured by BenchmarkObserve (about 8 ns for a message
// event on one core), and the cost on a server's echo and handshake rates
// in docs/benchmarks.md.
//
// # Example
//
//	reg := prometheus.NewRegistry()
//	obs, err := prommetrics.New(reg, prommetrics.Options{})
//	if err != nil { … }
//	srv, err := wsauth.New(wsauth.Options{Verifier: verifier, Observer: obs})
//	if err != nil { … }
//	mux.Handle("/ws", srv)
//	internal.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//	internal.Handle("GET /readyz", srv.ReadyHandler())
//	internal.Handle("GET /livez", srv.LiveHandler())
package prommetrics
