package main

import (
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/jwks"
)

// statusAnswer is /status.json: what the status page shows. Its numbers are
// the values of the metrics /metrics serves, read from the same registry,
// so that the page and a dashboard never disagree. Like the metrics, it
// names no user, session, token or client address.
type statusAnswer struct {
	Time   int64  `json:"time"` // Unix ms of the reading
	Node   string `json:"node"`
	Broker string `json:"broker"` // none, memory or nats

	Sessions map[string]int64 `json:"sessions"` // wsauth_sessions by state: pending, active, expired
	Opened   int64            `json:"sessions_opened"`
	Closes   map[string]int64 `json:"closes"` // wsauth_sessions_closed_total by code

	Accepted map[string]int64 `json:"tokens_accepted"` // by stage
	Refused  map[string]int64 `json:"tokens_refused"`  // by reason, all stages together
	Upgrades []refusalCount   `json:"refused_upgrades"`

	ReauthLag lagSummary `json:"reauth_lag"`

	Outbound    queueDepth `json:"outbound"`
	Overflows   int64      `json:"overflows"`
	Undelivered int64      `json:"undelivered"`
	Resumed     int64      `json:"resumed"`
	Received    int64      `json:"messages_received"`
	Sent        int64      `json:"messages_sent"`

	BrokerCalls []brokerCount  `json:"broker_calls"`
	Verifier    []issuerStatus `json:"verifier"` // jwks.Verifier.Status
}

type refusalCount struct {
	Reason string `json:"reason"`
	Status string `json:"status"`
	Count  int64  `json:"count"`
}

type brokerCount struct {
	Operation string `json:"operation"`
	OK        int64  `json:"ok"`
	Error     int64  `json:"error"`
}

type queueDepth struct {
	Messages int64 `json:"messages"`
	Bytes    int64 `json:"bytes"`
}

// lagSummary is wsauth_reauth_lag_seconds: how many reauthentications, and
// the mean and quantiles of their lag (estimated from the buckets as
// PromQL's histogram_quantile does; null before the first).
type lagSummary struct {
	Count int64    `json:"count"`
	Mean  *float64 `json:"mean_seconds"`
	P50   *float64 `json:"p50_seconds"`
	P90   *float64 `json:"p90_seconds"`
	P99   *float64 `json:"p99_seconds"`
}

type issuerStatus struct {
	Issuer   string `json:"issuer"`
	Keys     int    `json:"keys"`
	Fetched  string `json:"fetched,omitempty"` // RFC 3339
	Error    string `json:"error,omitempty"`   // of the last fetch, if it failed since
	FailedAt string `json:"failed_at,omitempty"`
}

// statusHandler serves /status.json from reg's metrics, srv's node and v's
// key status.
func statusHandler(reg prometheus.Gatherer, srv *wsauth.Server, v *jwks.Verifier, broker string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mfs, err := reg.Gather()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		a := statusOf(mfs)
		a.Time = time.Now().UnixMilli()
		a.Node = srv.Node()
		a.Broker = broker
		for _, is := range v.Status() {
			s := issuerStatus{Issuer: is.Issuer, Keys: is.Keys, Fetched: rfc3339(is.Fetched), FailedAt: rfc3339(is.FailedAt)}
			if is.Err != nil {
				s.Error = is.Err.Error()
			}
			a.Verifier = append(a.Verifier, s)
		}
		writeJSON(w, http.StatusOK, a)
	})
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// statusOf reads wsauth's metrics out of a registry's families.
func statusOf(mfs []*dto.MetricFamily) statusAnswer {
	a := statusAnswer{
		Sessions: map[string]int64{"pending": 0, "active": 0, "expired": 0},
		Closes:   map[string]int64{},
		Accepted: map[string]int64{},
		Refused:  map[string]int64{},
		// Empty lists rather than null: the page iterates over them.
		Upgrades:    []refusalCount{},
		BrokerCalls: []brokerCount{},
	}
	calls := map[string]*brokerCount{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := labelsOf(m)
			// A metric is a gauge or a counter: the other's getter is 0.
			n := int64(m.GetGauge().GetValue() + m.GetCounter().GetValue())
			switch mf.GetName() {
			case "wsauth_sessions":
				a.Sessions[l["state"]] = n
			case "wsauth_sessions_opened_total":
				a.Opened = n
			case "wsauth_sessions_closed_total":
				a.Closes[l["code"]] = n
			case "wsauth_token_verifications_total":
				if l["result"] == "accepted" {
					a.Accepted[l["stage"]] += n
				} else {
					a.Refused[l["reason"]] += n
				}
			case "wsauth_upgrades_refused_total":
				a.Upgrades = append(a.Upgrades, refusalCount{Reason: l["reason"], Status: l["status"], Count: n})
			case "wsauth_reauth_lag_seconds":
				a.ReauthLag = lagOf(m.GetHistogram())
			case "wsauth_outbound_queued_messages":
				a.Outbound.Messages = n
			case "wsauth_outbound_queued_bytes":
				a.Outbound.Bytes = n
			case "wsauth_outbound_overflows_total":
				a.Overflows = n
			case "wsauth_messages_undelivered_total":
				a.Undelivered = n
			case "wsauth_messages_resumed_total":
				a.Resumed = n
			case "wsauth_messages_received_total":
				a.Received = n
			case "wsauth_messages_sent_total":
				a.Sent = n
			case "wsauth_broker_calls_total":
				op := l["operation"]
				c := calls[op]
				if c == nil {
					c = &brokerCount{Operation: op}
					calls[op] = c
				}
				if l["outcome"] == "error" {
					c.Error += n
				} else {
					c.OK += n
				}
			}
		}
	}
	for _, c := range calls {
		a.BrokerCalls = append(a.BrokerCalls, *c)
	}
	sort.Slice(a.BrokerCalls, func(i, j int) bool { return a.BrokerCalls[i].Operation < a.BrokerCalls[j].Operation })
	return a
}

func labelsOf(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

func lagOf(h *dto.Histogram) lagSummary {
	s := lagSummary{Count: int64(h.GetSampleCount())}
	if s.Count == 0 {
		return s
	}
	mean := h.GetSampleSum() / float64(s.Count)
	p50, p90, p99 := quantile(0.5, h), quantile(0.9, h), quantile(0.99, h)
	s.Mean, s.P50, s.P90, s.P99 = &mean, &p50, &p90, &p99
	return s
}

// quantile estimates the q-quantile of h from its buckets as PromQL's
// histogram_quantile does: linearly within the bucket that holds it (the
// first from 0), and the highest finite bound for the +Inf bucket.
func quantile(q float64, h *dto.Histogram) float64 {
	rank := q * float64(h.GetSampleCount())
	lower, below := 0.0, 0.0
	for _, b := range h.GetBucket() {
		upper, n := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if n >= rank {
			if n == below {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/(n-below)
		}
		lower, below = upper, n
	}
	return lower
}
