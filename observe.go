package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// An Observer receives what a Server does, one Event at a time, for
// metrics: package prommetrics turns them into Prometheus metrics. Observe
// is called on the server's goroutines, many times on hot paths (every
// message queued and written): it must be fast, must not block and must
// not call the Server. An Event never carries a token, a subject, a session
// id or an address, so metrics built from it have bounded labels.
type Observer interface {
	Observe(Event)
}

// An Event is one thing a Server did; Kind says which, and which fields
// are set.
type Event struct {
	Kind EventKind
	// Status is a Refused event's HTTP status.
	Status int
	// Reason is a fixed text: why an upgrade was Refused ("origin",
	// "pending", …, see Refused), or, for Verified, "" for an accepted
	// token and otherwise the close reason it was refused with ("token
	// expired", "unknown key", …; a custom Verifier's reasons too).
	Reason string
	// Stage says where: for Verified, "auth", "reauth", "upgrade" (a token
	// on the upgrade request), "ticket" (the ticket exchange) or "message"
	// (a per-message token); for BrokerCall, the Member method
	// ("Publish", "History", …).
	Stage string
	// From and To are a StateChanged event's states; a new session comes
	// from Closed (nothing) to Pending.
	From, To session.State
	// Code is a Closed event's close code.
	Code protocol.CloseCode
	// N counts messages: Queued (negative when they leave the outbox),
	// Undelivered, Resumed, Received, Sent.
	N int
	// Bytes is a Queued event's change of queued frame bytes.
	Bytes int
	// Took is how long it took: Verified (the token check), Reauthenticated
	// (from reauth_required to the fresh token's auth_ok), BrokerCall.
	Took time.Duration
	// Failed is set on a BrokerCall that returned an error.
	Failed bool
}

// EventKind says what an Event is about.
type EventKind uint8

// The kinds of Event.
const (
	// Refused: an upgrade request (or a ticket exchange) refused with an
	// HTTP status, before any socket exists. Reasons: "method", "upgrade",
	// "key", "origin", "shutdown", "pending", "hijack", "credential",
	// "subprotocol", "ticket".
	Refused EventKind = iota + 1
	// Verified: a token checked (Stage, Reason, Took).
	Verified
	// StateChanged: a session moved from From to To.
	StateChanged
	// Reauthenticated: a session answered reauth_required (Took: the lag).
	Reauthenticated
	// Queued: outbound messages entered (N > 0) or left (N < 0) a
	// session's outbox, with Bytes of frames.
	Queued
	// Overflowed: a session's outbox overflowed: closed 4413 while its
	// token was expired, or fell behind its stream.
	Overflowed
	// Undelivered: N messages handed to Options.OnUndelivered.
	Undelivered
	// Resumed: N messages queued for a client that resumed its stream.
	Resumed
	// Received: a client message read (N = 1).
	Received
	// Sent: N messages written to a client.
	Sent
	// Closed: a session closed with Code.
	Closed
	// BrokerCall: a call to the Broker (Stage, Took, Failed).
	BrokerCall
)

var kindNames = [...]string{"", "refused", "verified", "state_changed", "reauthenticated", "queued",
	"overflowed", "undelivered", "resumed", "received", "sent", "closed", "broker_call"}

// String returns the kind's name, e.g. "refused".
func (k EventKind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// observe hands e to the Observer, if there is one.
func (srv *Server) observe(e Event) {
	if srv.opts.Observer != nil {
		srv.opts.Observer.Observe(e)
	}
}

// setStateLocked moves s to st and tells the Observer. The caller holds
// s.mu.
func (s *Session) setStateLocked(st session.State) {
	if s.state == st {
		return
	}
	from := s.state
	s.state = st
	s.srv.observe(Event{Kind: StateChanged, From: from, To: st})
}

// refuse answers an upgrade request with status and msg, as plain text,
// and tells the Observer why.
func (srv *Server) refuse(w http.ResponseWriter, status int, reason, msg string) {
	srv.observe(Event{Kind: Refused, Status: status, Reason: reason})
	http.Error(w, msg, status)
}

// refuseJSON is refuse for the JSON answers of credentials.
func (srv *Server) refuseJSON(w http.ResponseWriter, status int, reason, msg string) {
	srv.observe(Event{Kind: Refused, Status: status, Reason: reason})
	writeError(w, status, msg)
}

// refusalLog rate-limits the log lines of refusals a client can cause at
// will (refused tokens and upgrades), so that a flood cannot flood the log:
// at most 10 a second, and the next line that goes out says how many were
// left out.
type refusalLog struct {
	limiter *rate.Limiter
	mu      sync.Mutex
	dropped int
}

func newRefusalLog() *refusalLog { return &refusalLog{limiter: rate.NewLimiter(10, 20)} }

// log writes msg with attrs at info level, unless the rate is spent.
func (l *refusalLog) log(logger *slog.Logger, msg string, attrs ...slog.Attr) {
	if !l.limiter.Allow() {
		l.mu.Lock()
		l.dropped++
		l.mu.Unlock()
		return
	}
	l.mu.Lock()
	if l.dropped > 0 {
		attrs = append(attrs, slog.Int("suppressed_before", l.dropped))
		l.dropped = 0
	}
	l.mu.Unlock()
	logger.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
}

// observedMember times every call to the broker for the Observer.
type observedMember struct {
	broker.Member
	srv *Server
}

func (m observedMember) done(op string, start time.Time, err error) {
	m.srv.observe(Event{Kind: BrokerCall, Stage: op, Took: time.Since(start), Failed: err != nil})
}

func (m observedMember) Publish(ctx context.Context, p Principal, data json.RawMessage) (protocol.Position, error) {
	start := time.Now()
	pos, err := m.Member.Publish(ctx, p, data)
	m.done("Publish", start, err)
	return pos, err
}

func (m observedMember) Interest(ctx context.Context, p Principal, on bool) error {
	start := time.Now()
	err := m.Member.Interest(ctx, p, on)
	m.done("Interest", start, err)
	return err
}

func (m observedMember) History(ctx context.Context, p Principal, after protocol.Position) ([]broker.Message, protocol.Position, error) {
	start := time.Now()
	msgs, head, err := m.Member.History(ctx, p, after)
	failed := err
	if errors.Is(err, broker.ErrLost) {
		failed = nil // a lost position is an answer, not a failure
	}
	m.done("History", start, failed)
	return msgs, head, err
}

func (m observedMember) Broadcast(ctx context.Context, data json.RawMessage) error {
	start := time.Now()
	err := m.Member.Broadcast(ctx, data)
	m.done("Broadcast", start, err)
	return err
}

func (m observedMember) Send(ctx context.Context, node, sessionID string, data json.RawMessage) error {
	start := time.Now()
	err := m.Member.Send(ctx, node, sessionID, data)
	m.done("Send", start, err)
	return err
}

func (m observedMember) Revoke(ctx context.Context, r broker.Revocation) error {
	start := time.Now()
	err := m.Member.Revoke(ctx, r)
	m.done("Revoke", start, err)
	return err
}

func (m observedMember) PutOnce(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	start := time.Now()
	err := m.Member.PutOnce(ctx, key, value, ttl)
	m.done("PutOnce", start, err)
	return err
}

func (m observedMember) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	value, err := m.Member.TakeOnce(ctx, key)
	failed := err
	if errors.Is(err, broker.ErrNotFound) {
		failed = nil // a ticket used, expired or never issued: an answer
	}
	m.done("TakeOnce", start, failed)
	return value, err
}
