package prommetrics

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// Options configures an Observer. The zero value is the default: only the
// protocol's close codes and the reasons of jwks and the server get label
// values of their own.
type Options struct {
	// CloseCodes are the application's own close codes, those its hooks
	// close sessions with (a *protocol.CloseError returned from
	// OnAuthenticated or OnMessage, 3000-4999), that get a label value of
	// their own in wsauth_sessions_closed_total. The protocol's codes
	// always do (1000-1015, 4400-4440); any other code counts as "other",
	// because a client chooses the code of its own close frame: counting
	// every code apart would let one client add 2,000 series. Default
	// none.
	CloseCodes []protocol.CloseCode
	// Reasons are the refusal reasons of a custom Verifier (those of the
	// *protocol.CloseError its errors wrap) that get a label value of their
	// own in wsauth_token_verifications_total. The reasons of jwks and of
	// the server always do; any other counts as "other". Default none.
	Reasons []string
}

// Bucket bounds of the histograms, in seconds.
var (
	// A signature check takes 35-70 µs; an unknown kid may wait for a
	// JWK Set fetch, up to the auth deadline (5 s).
	verifyBuckets = []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
	// A client answers reauth_required within ReauthLead (30 s) +
	// ReauthGrace (10 s), or is closed with 4440.
	lagBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 25, 30, 40, 60, 120}
	// A NATS round trip takes 0.1-1 ms; natsbroker gives up after 5 s.
	brokerBuckets = []float64{100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
)

// Observer turns a wsauth.Server's Events into Prometheus metrics. Set it
// as Options.Observer; several Servers may share one, and their metrics
// add up. Its methods are safe for concurrent use.
type Observer struct {
	hot *hotMetrics

	closed      *prometheus.CounterVec
	closedIndex map[protocol.CloseCode]int // into closedCodes, closedSlots
	closedCodes []string                   // label values; the last is "other"
	closedSlots []slot[prometheus.Counter]

	refused      *prometheus.CounterVec
	refusedSlots [len(refusalReasons)][len(refusalStatuses)]slot[prometheus.Counter]

	verified      *prometheus.CounterVec
	reasonIndex   map[string]int // into reasons; "" (accepted) is 0
	reasons       []string       // label values; the last is "other"
	verifiedSlots [len(stages)][]slot[prometheus.Counter]
	verifyTime    *prometheus.HistogramVec
	verifyTimes   [len(stages)]slot[prometheus.Observer]

	reauthLag prometheus.Histogram

	brokerCalls *prometheus.CounterVec
	brokerSlots [len(operations)][2]slot[prometheus.Counter] // [op][0 ok, 1 error]
	brokerTime  *prometheus.HistogramVec
	brokerTimes [len(operations)]slot[prometheus.Observer]
}

var _ wsauth.Observer = (*Observer)(nil)

// New registers wsauth's metrics (see docs/operations.md for the list)
// with reg, prometheus.DefaultRegisterer if nil, and returns the Observer
// that updates them. It fails if opts are invalid or a metric is already
// registered with reg (by another Observer: make one per registry, or
// give each its own labels with prometheus.WrapRegistererWith).
func New(reg prometheus.Registerer, opts Options) (*Observer, error) {
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	o := &Observer{
		hot: newHotMetrics(),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wsauth", Name: "sessions_closed_total",
			Help: `Sessions closed, by close code ("other": a code outside the protocol's and prommetrics.Options.CloseCodes).`,
		}, []string{"code"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wsauth", Name: "upgrades_refused_total",
			Help: "Upgrade requests and ticket exchanges refused before any socket, by reason and HTTP status.",
		}, []string{"reason", "status"}),
		verified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wsauth", Name: "token_verifications_total",
			Help: `Tokens verified, by stage (auth, reauth, upgrade, ticket, message), result (accepted, refused) and the refusal's close reason ("" when accepted).`,
		}, []string{"stage", "result", "reason"}),
		verifyTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "wsauth", Name: "token_verification_duration_seconds",
			Help:    "Time to verify a token (signature, claims, revocations; a JWK Set fetch it waited for), by stage.",
			Buckets: verifyBuckets,
		}, []string{"stage"}),
		reauthLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "wsauth", Name: "reauth_lag_seconds",
			Help:    "Time from reauth_required to the fresh token's auth_ok, per reauthentication.",
			Buckets: lagBuckets,
		}),
		brokerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wsauth", Name: "broker_calls_total",
			Help: "Calls to the Broker, by operation and outcome (ok, error).",
		}, []string{"operation", "outcome"}),
		brokerTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "wsauth", Name: "broker_call_duration_seconds",
			Help:    "Time a call to the Broker took, by operation.",
			Buckets: brokerBuckets,
		}, []string{"operation"}),
	}
	if err := o.vocabularies(opts); err != nil {
		return nil, err
	}
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{o.hot, o.closed, o.refused, o.verified, o.verifyTime, o.reauthLag, o.brokerCalls, o.brokerTime} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("prommetrics: %w", err)
		}
		done = append(done, c)
	}
	return o, nil
}

// vocabularies sets the label values of close codes and refusal reasons.
func (o *Observer) vocabularies(opts Options) error {
	o.closedIndex = make(map[protocol.CloseCode]int)
	add := func(c protocol.CloseCode) {
		if _, dup := o.closedIndex[c]; !dup {
			o.closedIndex[c] = len(o.closedCodes)
			o.closedCodes = append(o.closedCodes, strconv.Itoa(int(c)))
		}
	}
	for _, c := range protocolCloseCodes() {
		add(c)
	}
	for _, c := range opts.CloseCodes {
		if c < 3000 || c > 4999 {
			return fmt.Errorf("prommetrics: Options.CloseCodes: %d is not an application's close code (3000-4999)", c)
		}
		add(c)
	}
	o.closedCodes = append(o.closedCodes, other)
	o.closedSlots = make([]slot[prometheus.Counter], len(o.closedCodes))

	o.reasonIndex = make(map[string]int)
	for _, r := range verifyReasons {
		o.reasonIndex[r] = len(o.reasons)
		o.reasons = append(o.reasons, r)
	}
	for _, r := range opts.Reasons {
		if r == "" || r == other || len(r) > protocol.MaxReasonLen || !utf8.ValidString(r) {
			return fmt.Errorf("prommetrics: Options.Reasons: %q is not a close reason (1 to %d bytes of UTF-8, not %q)", r, protocol.MaxReasonLen, other)
		}
		if _, dup := o.reasonIndex[r]; !dup {
			o.reasonIndex[r] = len(o.reasons)
			o.reasons = append(o.reasons, r)
		}
	}
	o.reasons = append(o.reasons, other)
	for i := range o.verifiedSlots {
		o.verifiedSlots[i] = make([]slot[prometheus.Counter], len(o.reasons))
	}
	return nil
}

// Observe updates the metrics e is about. It implements wsauth.Observer:
// it does not block or allocate (but the first time a set of label values
// occurs), and the events of messages (Queued, Sent, Received) cost an
// atomic add or two.
func (o *Observer) Observe(e wsauth.Event) {
	h := o.hot
	switch e.Kind {
	case wsauth.Queued:
		h.queuedMessages.Add(int64(e.N))
		h.queuedBytes.Add(int64(e.Bytes))
	case wsauth.Sent:
		h.sent.Add(int64(e.N))
	case wsauth.Received:
		h.received.Add(int64(e.N))
	case wsauth.StateChanged:
		if e.From < session.Closed {
			h.sessions[e.From].Add(-1)
		} else if e.To == session.Pending {
			h.opened.Add(1)
		}
		if e.To < session.Closed {
			h.sessions[e.To].Add(1)
		}
	case wsauth.Verified:
		o.verification(e.Stage, e.Reason, e.Took.Seconds())
	case wsauth.Reauthenticated:
		o.reauthLag.Observe(e.Took.Seconds())
	case wsauth.Overflowed:
		h.overflows.Add(1)
	case wsauth.Undelivered:
		h.undelivered.Add(int64(e.N))
	case wsauth.Resumed:
		h.resumed.Add(int64(e.N))
	case wsauth.Closed:
		o.closedCounter(e.Code).Inc()
	case wsauth.Refused:
		o.refusedCounter(e.Reason, e.Status).Inc()
	case wsauth.BrokerCall:
		o.brokerCall(e.Stage, e.Failed, e.Took.Seconds())
	}
}

func (o *Observer) verification(stage, reason string, took float64) {
	st, r := stageIndex(stage), 0 // accepted
	if reason != "" {
		var known bool
		if r, known = o.reasonIndex[reason]; !known {
			r = len(o.reasons) - 1
		}
	}
	c := o.verifiedSlots[st][r].get(func() prometheus.Counter {
		result := "refused"
		if r == 0 {
			result = "accepted"
		}
		return o.verified.WithLabelValues(stages[st], result, o.reasons[r])
	})
	c.Inc()
	o.verifyTimes[st].get(func() prometheus.Observer {
		return o.verifyTime.WithLabelValues(stages[st])
	}).Observe(took)
}

func (o *Observer) closedCounter(code protocol.CloseCode) prometheus.Counter {
	i, ok := o.closedIndex[code]
	if !ok {
		i = len(o.closedCodes) - 1
	}
	return o.closedSlots[i].get(func() prometheus.Counter {
		return o.closed.WithLabelValues(o.closedCodes[i])
	})
}

func (o *Observer) refusedCounter(reason string, status int) prometheus.Counter {
	r, st := refusalIndex(reason), statusIndex(status)
	return o.refusedSlots[r][st].get(func() prometheus.Counter {
		return o.refused.WithLabelValues(refusalReasons[r], statusLabel(st))
	})
}

func (o *Observer) brokerCall(op string, failed bool, took float64) {
	i, outcome := operationIndex(op), 0
	if failed {
		outcome = 1
	}
	o.brokerSlots[i][outcome].get(func() prometheus.Counter {
		return o.brokerCalls.WithLabelValues(operations[i], [...]string{"ok", "error"}[outcome])
	}).Inc()
	o.brokerTimes[i].get(func() prometheus.Observer {
		return o.brokerTime.WithLabelValues(operations[i])
	}).Observe(took)
}
