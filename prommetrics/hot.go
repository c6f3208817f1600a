package prommetrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// hotMetrics are the metrics without labels, or with one label of three
// values, that Observe updates on hot paths (every message queued, written
// and read): plain atomic integers, each on a cache line of its own so
// that the goroutines updating different ones do not contend, turned into
// Prometheus metrics only when scraped (a prometheus.Gauge's Add is a
// compare-and-swap loop on a float).
type hotMetrics struct {
	sessions       [3]paddedInt // by session.State: Pending, Active, Expired
	opened         paddedInt
	queuedMessages paddedInt
	queuedBytes    paddedInt
	overflows      paddedInt
	undelivered    paddedInt
	resumed        paddedInt
	received       paddedInt
	sent           paddedInt

	sessionsDesc, openedDesc                          *prometheus.Desc
	queuedMessagesDesc, queuedBytesDesc, overflowDesc *prometheus.Desc
	undeliveredDesc, resumedDesc                      *prometheus.Desc
	receivedDesc, sentDesc                            *prometheus.Desc
}

type paddedInt struct {
	atomic.Int64
	_ [56]byte
}

// sessionStates are the label values of wsauth_sessions, by session.State.
var sessionStates = [3]string{"pending", "active", "expired"}

func newHotMetrics() *hotMetrics {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("wsauth_"+name, help, labels, nil)
	}
	return &hotMetrics{
		sessionsDesc:       desc("sessions", "Open sessions by state: pending (upgraded, not authenticated yet), active, expired (token expired, waiting for a fresh one).", "state"),
		openedDesc:         desc("sessions_opened_total", "Upgrades that opened a session."),
		queuedMessagesDesc: desc("outbound_queued_messages", "Messages queued for clients, not written yet, over all sessions."),
		queuedBytesDesc:    desc("outbound_queued_bytes", "Bytes of the frames queued for clients, not written yet, over all sessions."),
		overflowDesc:       desc("outbound_overflows_total", "Outboxes that overflowed: a session closed with 4413 while its token was expired, or that fell behind its stream."),
		undeliveredDesc:    desc("messages_undelivered_total", "Messages handed to Options.OnUndelivered (or dropped without it): never written to their client."),
		resumedDesc:        desc("messages_resumed_total", "Messages of users' streams queued for clients that resumed or caught up, from the broker's history."),
		receivedDesc:       desc("messages_received_total", "Messages read from authenticated clients."),
		sentDesc:           desc("messages_sent_total", "Messages written to clients."),
	}
}

// Describe implements prometheus.Collector.
func (h *hotMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{h.sessionsDesc, h.openedDesc, h.queuedMessagesDesc, h.queuedBytesDesc,
		h.overflowDesc, h.undeliveredDesc, h.resumedDesc, h.receivedDesc, h.sentDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (h *hotMetrics) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v *paddedInt, labels ...string) {
		// A session may report what left its outbox just before what
		// entered it (a resume queues its backlog, unlocks, then
		// reports): never show the moment's negative value.
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(max(v.Load(), 0)), labels...)
	}
	counter := func(d *prometheus.Desc, v *paddedInt) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v.Load()))
	}
	for i, state := range sessionStates {
		gauge(h.sessionsDesc, &h.sessions[i], state)
	}
	gauge(h.queuedMessagesDesc, &h.queuedMessages)
	gauge(h.queuedBytesDesc, &h.queuedBytes)
	counter(h.openedDesc, &h.opened)
	counter(h.overflowDesc, &h.overflows)
	counter(h.undeliveredDesc, &h.undelivered)
	counter(h.resumedDesc, &h.resumed)
	counter(h.receivedDesc, &h.received)
	counter(h.sentDesc, &h.sent)
}
