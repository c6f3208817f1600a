package natsbroker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// Headers of the broker's messages. Values that come from users (the
// principal, a session id) are base64url, so that no byte of theirs can
// break a header.
const (
	hdrPrincipal = "Wsauth-Principal" // base64url(issuer) "." base64url(subject)
	hdrEpoch     = "Wsauth-Epoch"
	hdrSeq       = "Wsauth-Seq"
	hdrNode      = "Wsauth-Node" // the member that sent it
	hdrPrev      = "Wsauth-Prev" // the stream sequence of the user's message before
	hdrSession   = "Wsauth-Session"
	hdrTokenID   = "Wsauth-Jti" // a revocation's token id, base64url
	hdrAt        = "Wsauth-At"  // a revocation's time, unix nanoseconds

	// Set by JetStream on the messages of a direct get.
	hdrStatus     = "Status"
	hdrNumPending = "Nats-Num-Pending"
	hdrStreamSeq  = "Nats-Sequence"
	hdrSubject    = "Nats-Subject"
	hdrTime       = "Nats-Time-Stamp"
	hdrLastSeq    = "Nats-Last-Sequence"

	errCodeNoMessage = 10037 // JetStream: no message found
)

var b64 = base64.RawURLEncoding

func encodePrincipal(p session.Principal) string {
	return b64.EncodeToString([]byte(p.Issuer)) + "." + b64.EncodeToString([]byte(p.Subject))
}

func decodePrincipal(s string) (session.Principal, bool) {
	iss, sub, ok := strings.Cut(s, ".")
	if !ok {
		return session.Principal{}, false
	}
	i, err1 := b64.DecodeString(iss)
	s2, err2 := b64.DecodeString(sub)
	if err1 != nil || err2 != nil {
		return session.Principal{}, false
	}
	return session.Principal{Issuer: string(i), Subject: string(s2)}, true
}

// userMsg builds the message of p's stream at pos, as stored and as
// announced live; prev is the stream sequence of the message before it
// (0 for none), which lets History walk back from the head.
func userMsg(subject, node string, p session.Principal, pos protocol.Position, prev uint64, data []byte) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(hdrPrincipal, encodePrincipal(p))
	m.Header.Set(hdrEpoch, pos.Epoch)
	m.Header.Set(hdrSeq, strconv.FormatUint(pos.Seq, 10))
	m.Header.Set(hdrNode, node)
	if prev != 0 {
		m.Header.Set(hdrPrev, strconv.FormatUint(prev, 10))
	}
	m.Data = data
	return m
}

// A stored is one message of a user's stream, read back.
type stored struct {
	p    session.Principal
	pos  protocol.Position
	node string
	prev uint64 // 0: unknown
	data []byte
}

// decodeUserMsg reads a message that userMsg built; ok is false for a
// message that is not one (which the broker then ignores).
func decodeUserMsg(h nats.Header, data []byte) (s stored, ok bool) {
	p, ok := decodePrincipal(h.Get(hdrPrincipal))
	if !ok {
		return stored{}, false
	}
	seq, err := strconv.ParseUint(h.Get(hdrSeq), 10, 64)
	epoch := h.Get(hdrEpoch)
	if err != nil || seq == 0 || epoch == "" {
		return stored{}, false
	}
	prev, _ := strconv.ParseUint(h.Get(hdrPrev), 10, 64)
	return stored{p: p, pos: protocol.Position{Epoch: epoch, Seq: seq}, node: h.Get(hdrNode), prev: prev, data: data}, true
}

// last reads the last message of u's stream from the stream's leader (not
// a replica, which may be behind): the head that History reports.
func (b *Broker) last(ctx context.Context, u user) (last, error) {
	req, _ := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{b.userPrefix + u.key})
	resp, err := b.nc.RequestWithContext(ctx, b.getSubject, req)
	if err != nil {
		return last{}, err
	}
	var r struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq  uint64    `json:"seq"`
			Hdrs []byte    `json:"hdrs"`
			Data []byte    `json:"data"`
			Time time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return last{}, fmt.Errorf("message get: %w", err)
	}
	switch {
	case r.Error != nil && r.Error.ErrCode == errCodeNoMessage:
		return last{}, nil
	case r.Error != nil:
		return last{}, fmt.Errorf("message get: %s (%d)", r.Error.Description, r.Error.ErrCode)
	case r.Message == nil || r.Message.Seq == 0:
		return last{}, errors.New("message get: empty answer")
	}
	var h nats.Header
	if len(r.Message.Hdrs) > 0 {
		if h, err = nats.DecodeHeadersMsg(r.Message.Hdrs); err != nil {
			return last{}, fmt.Errorf("message get: %w", err)
		}
	}
	return u.last(r.Message.Seq, r.Message.Time, h, r.Message.Data), nil
}

// lastDirect reads the last message of u's stream with a direct get, which
// any replica answers: faster than last (the API's queue is skipped), and
// what Publish builds on. A replica behind the leader only costs Publish
// one more compare-and-set round.
func (b *Broker) lastDirect(ctx context.Context, u user) (last, error) {
	resp, err := b.nc.RequestWithContext(ctx, b.directPrefix+"."+b.userPrefix+u.key, nil)
	if err != nil {
		return last{}, err
	}
	switch status := resp.Header.Get(hdrStatus); status {
	case "":
	case "404":
		return last{}, nil
	default:
		return last{}, fmt.Errorf("direct get: status %s %s", status, resp.Header.Get("Description"))
	}
	seq, at, err := seqAndTime(resp.Header)
	if err != nil {
		return last{}, err
	}
	return u.last(seq, at, resp.Header, resp.Data), nil
}

// last returns what a read of u's last message found. A message that is
// not u's (unreadable, or another principal's with the same key) leaves
// the position zero: the next publish starts a new epoch after it.
func (u user) last(streamSeq uint64, at time.Time, h nats.Header, data []byte) last {
	l := last{streamSeq: streamSeq, at: at}
	if s, ok := decodeUserMsg(h, data); ok && s.p == u.p {
		l.pos, l.msg = s.pos, s
	}
	return l
}

// get reads the message at stream sequence seq with a direct get; found
// is false when there is none (any more).
func (b *Broker) get(ctx context.Context, seq uint64) (r rawMsg, found bool, err error) {
	req, _ := json.Marshal(struct {
		Seq uint64 `json:"seq"`
	}{seq})
	resp, err := b.nc.RequestWithContext(ctx, b.directPrefix, req)
	if err != nil {
		return rawMsg{}, false, err
	}
	switch status := resp.Header.Get(hdrStatus); status {
	case "":
	case "404":
		return rawMsg{}, false, nil
	default:
		return rawMsg{}, false, fmt.Errorf("direct get: status %s %s", status, resp.Header.Get("Description"))
	}
	streamSeq, at, err := seqAndTime(resp.Header)
	if err != nil {
		return rawMsg{}, false, err
	}
	return rawMsg{Msg: resp, streamSeq: streamSeq, at: at}, true, nil
}

// seqAndTime reads the stream sequence and time of a direct get's message.
func seqAndTime(h nats.Header) (uint64, time.Time, error) {
	seq, err := strconv.ParseUint(h.Get(hdrStreamSeq), 10, 64)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("direct get: sequence: %w", err)
	}
	at, err := time.Parse(time.RFC3339Nano, h.Get(hdrTime))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("direct get: time: %w", err)
	}
	return seq, at, nil
}

// A rawMsg is a message of a direct get.
type rawMsg struct {
	*nats.Msg
	streamSeq uint64
	at        time.Time
}

// scan hands fn the stream's messages on subjects matching filter, in
// stream order, from the first one stored at or after since, asking for
// batch messages at a time, until fn returns false or no message is left.
// It reads with JetStream's batched direct get, which any replica answers
// and which sees no write in the middle of a batch.
func (b *Broker) scan(ctx context.Context, filter string, since time.Time, batch int, fn func(rawMsg) bool) error {
	inbox := b.nc.NewInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	type request struct {
		Seq       uint64     `json:"seq,omitempty"`
		NextFor   string     `json:"next_by_subj"`
		Batch     int        `json:"batch"`
		StartTime *time.Time `json:"start_time,omitempty"`
	}
	req := request{NextFor: filter, Batch: batch, StartTime: &since}
	for {
		data, _ := json.Marshal(req)
		if err := b.nc.PublishMsg(&nats.Msg{Subject: b.directPrefix, Reply: inbox, Data: data}); err != nil {
			return err
		}
		next, err := b.readBatch(ctx, sub, fn)
		if err != nil || next == 0 {
			return err
		}
		req = request{NextFor: filter, Batch: batch, Seq: next}
	}
}

// readBatch reads one batch's answer. It returns the stream sequence to
// go on from, or 0 when the scan is over.
func (b *Broker) readBatch(ctx context.Context, sub *nats.Subscription, fn func(rawMsg) bool) (next uint64, err error) {
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return 0, err
		}
		if status := m.Header.Get(hdrStatus); status != "" {
			switch status {
			case "204": // end of batch
				pending, _ := strconv.ParseUint(m.Header.Get(hdrNumPending), 10, 64)
				lastSeq, _ := strconv.ParseUint(m.Header.Get(hdrLastSeq), 10, 64)
				if pending == 0 || lastSeq == 0 {
					return 0, nil
				}
				return lastSeq + 1, nil
			case "404": // nothing (more) matches
				return 0, nil
			case "503":
				return 0, nats.ErrNoResponders
			default:
				return 0, fmt.Errorf("direct get: status %s %s", status, m.Header.Get("Description"))
			}
		}
		seq, at, err := seqAndTime(m.Header)
		if err != nil {
			return 0, err
		}
		if !fn(rawMsg{Msg: m, streamSeq: seq, at: at}) {
			return 0, nil
		}
	}
}
