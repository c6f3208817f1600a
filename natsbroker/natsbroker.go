package natsbroker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// Options configure a Broker. The zero value of each field means its
// default. The stream's bounds (MaxMessages, MaxBytes, Replicas) are
// applied by New to the stream, so every Broker of a cluster should be
// given the same ones: the last New wins.
type Options struct {
	// Stream names the JetStream stream and prefixes every subject the
	// broker uses (Stream+".u.*" and so on): letters, digits, '-' and '_'.
	// Default "WSAUTH".
	Stream string
	// KeepFor is how long a message is kept for resume: History treats
	// older messages as gone (ErrLost). It is applied when reading, not by
	// expiring messages, so a user's numbering survives quiet periods.
	// Default 2 minutes.
	KeepFor time.Duration
	// MaxMessages bounds each user's stream, in messages (JetStream's
	// MaxMsgsPerSubject): past it the user's oldest message goes. It also
	// bounds the revocations kept per user. Default 256.
	MaxMessages int
	// MaxBytes bounds the whole stream, in bytes as JetStream counts them
	// (data, headers and subject): past it the oldest messages of any user
	// go. Default 256 MiB.
	MaxBytes int64
	// Replicas is the stream's number of replicas in a NATS cluster (1, 3
	// or 5). Default 1.
	Replicas int
	// Timeout bounds each request to NATS (a publish and its
	// acknowledgement, a read, a Send), within the caller's ctx. Default 5
	// seconds.
	Timeout time.Duration
	// RevokeFor is how far back a member that joins reads the
	// revocations: at least as long as the longest-lived token. The
	// revocations themselves are kept like messages (the last MaxMessages
	// per user, within MaxBytes). Default 24 hours.
	RevokeFor time.Duration
	// OnceFor bounds how long a value put with PutOnce (an upgrade ticket)
	// may live: the TTL of the key-value bucket that keeps them
	// (Stream+"_ONCE"); shorter ttls are enforced when taking. Default 5
	// minutes.
	OnceFor time.Duration
}

const (
	defaultStream      = "WSAUTH"
	defaultKeepFor     = 2 * time.Minute
	defaultMaxMessages = 256
	defaultMaxBytes    = 256 << 20
	defaultTimeout     = 5 * time.Second

	// maxAttempts bounds the compare-and-set rounds of one Publish. A
	// publisher whose cached head is right wins the rounds against one
	// that must read it first most of the time (about 3 in 4 when two
	// publish to one user as fast as they can): 256 rounds make losing
	// them all unthinkable, and Options.Timeout ends them anyway.
	maxAttempts = 256
	// maxHeads bounds the cache of users' last positions.
	maxHeads = 1 << 14
	// walkMax is how many messages History reads one by one back from the
	// head, before it reads the user's messages since KeepFor ago in one
	// batch instead (a direct get costs about as much as 3 messages of a
	// batch).
	walkMax = 16
	// catchUpSlack is how far before a disconnect a member looks for what
	// it missed: it covers messages in flight when the connection dropped
	// and clock differences between this process and the NATS servers.
	catchUpSlack = 2 * time.Second
)

// Broker is a broker.Broker on NATS JetStream. Its zero value is not
// usable: use New.
type Broker struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	once jetstream.KeyValue // PutOnce, TakeOnce
	opts Options

	userPrefix   string // Stream+".u.": a user's stream, captured by JetStream
	livePrefix   string // Stream+".live.": a user's new messages, core NATS
	revokePrefix string // Stream+".revoke.": revocations, captured by JetStream
	allSubject   string // Stream+".all": broadcasts
	nodePrefix   string // Stream+".node.": Send to one node
	getSubject   string // the stream leader's message-get API
	directPrefix string // the direct-get API, served by any replica

	// locks serialises one process's publishes to a user (by the first
	// byte of the user's key), so that they do not race each other's
	// compare-and-set.
	locks [256]chan struct{}

	mu    sync.Mutex
	heads map[string]last // by user key: the last message this process wrote

	conflicts atomic.Uint64 // compare-and-set rounds lost, for tests and benchmarks
}

var _ broker.Broker = (*Broker)(nil)

// New makes sure the stream exists with opts' bounds (creating or updating
// it) and returns a Broker on nc. The caller owns nc: its URLs,
// credentials and reconnection settings are the application's, and it
// must stay open while the Broker is in use (close it after every member
// has left).
func New(ctx context.Context, nc *nats.Conn, opts Options) (*Broker, error) {
	if nc == nil {
		return nil, errors.New("natsbroker: nil connection")
	}
	if opts.Stream == "" {
		opts.Stream = defaultStream
	}
	if !validName(opts.Stream, true) {
		return nil, fmt.Errorf("natsbroker: stream name %q: want letters, digits, '-' and '_'", opts.Stream)
	}
	if opts.KeepFor <= 0 {
		opts.KeepFor = defaultKeepFor
	}
	if opts.MaxMessages <= 0 {
		opts.MaxMessages = defaultMaxMessages
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = defaultMaxBytes
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.RevokeFor <= 0 {
		opts.RevokeFor = 24 * time.Hour
	}
	if opts.OnceFor <= 0 {
		opts.OnceFor = 5 * time.Minute
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: %w", err)
	}
	s := opts.Stream
	b := &Broker{
		nc:           nc,
		js:           js,
		opts:         opts,
		userPrefix:   s + ".u.",
		livePrefix:   s + ".live.",
		revokePrefix: s + ".revoke.",
		allSubject:   s + ".all",
		nodePrefix:   s + ".node.",
		getSubject:   "$JS.API.STREAM.MSG.GET." + s,
		directPrefix: "$JS.API.DIRECT.GET." + s,
		heads:        make(map[string]last),
	}
	for i := range b.locks {
		b.locks[i] = make(chan struct{}, 1)
	}
	if !nc.IsConnected() {
		return nil, fmt.Errorf("natsbroker: %w: not connected to NATS", broker.ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        s,
		Description: "wsauth: users' recent messages and revocations",
		Subjects:    []string{b.userPrefix + "*", b.revokePrefix + "*"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    opts.Replicas,
		// No MaxAge: expiring a user's last message would restart the
		// user's numbering after a quiet period. KeepFor applies on read.
		MaxMsgsPerSubject: int64(opts.MaxMessages),
		MaxBytes:          opts.MaxBytes,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("natsbroker: stream %s: %w", s, err)
	}
	b.once, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      s + "_ONCE",
		Description: "wsauth: values taken once (upgrade tickets)",
		TTL:         opts.OnceFor,
		Storage:     jetstream.FileStorage,
		Replicas:    opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("natsbroker: bucket %s_ONCE: %w", s, err)
	}
	return b, nil
}

// Join makes node a member of the cluster. It subscribes to the node's
// signals (and waits for NATS to confirm them when connected); a Broker
// may be joined by several nodes.
func (b *Broker) Join(ctx context.Context, node string, h broker.Handler) (broker.Member, error) {
	if !validName(node, false) {
		return nil, fmt.Errorf("natsbroker: node name %q: want letters, digits, '-' and '_'", node)
	}
	if h == nil {
		return nil, errors.New("natsbroker: nil Handler")
	}
	m := &member{b: b, node: node, h: h, interest: make(map[string]*interest), done: make(chan struct{})}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.up, m.markDown = context.WithCancel(context.Background())
	for subj, cb := range map[string]nats.MsgHandler{
		b.allSubject:                  m.onBroadcast,
		b.revokePrefix + "*":          m.onRevoke,
		b.nodePrefix + node + ".send": m.onSend,
	} {
		sub, err := b.nc.Subscribe(subj, cb)
		if err != nil {
			m.unsubscribe()
			m.cancel()
			return nil, fmt.Errorf("natsbroker: join: %w: %w", broker.ErrUnavailable, err)
		}
		m.subs = append(m.subs, sub)
	}
	m.status = b.nc.StatusChanged(statuses...)
	go m.watch()
	if b.nc.IsConnected() {
		opCtx, done, err := m.op(ctx)
		if err == nil {
			err = b.nc.FlushWithContext(opCtx)
			if err != nil {
				err = m.fail(ctx, opCtx, "join", err)
			}
			done()
		}
		if err != nil {
			_ = m.Leave()
			return nil, err
		}
		// The revocations still kept, so that a node that starts again
		// refuses what was revoked before: before Join returns.
		since := time.Now().Add(-b.opts.RevokeFor)
		err = m.scan("revocations", b.revokePrefix+"*", since, 256, func(r rawMsg) {
			if rv, ok := decodeRevocation(r.Header); ok {
				m.deliver(func(h broker.Handler) { h.Revoke(rv) })
			}
		})
		if err != nil {
			_ = m.Leave()
			return nil, err
		}
	}
	return m, nil
}

// validName reports whether s is a name for a node (letters, digits, '-'
// and '_') or, with ascii, for a stream (the same in ASCII only: it names
// files on the servers).
func validName(s string, ascii bool) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		switch {
		case r == '-' || r == '_':
		case ascii && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9'):
			return false
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			return false
		}
	}
	return true
}

// A user is a principal and where its messages go.
type user struct {
	p   session.Principal
	key string // subject-safe: 32 hex digits of a SHA-256 of the principal
	idx byte   // which of Broker.locks
}

func (b *Broker) user(p session.Principal) user {
	h := sha256.New()
	var n [8]byte
	// The issuer's length first: ("a", "bc") and ("ab", "c") differ.
	binary.BigEndian.PutUint64(n[:], uint64(len(p.Issuer)))
	h.Write(n[:])
	h.Write([]byte(p.Issuer))
	h.Write([]byte(p.Subject))
	sum := h.Sum(nil)
	return user{p: p, key: hex.EncodeToString(sum[:16]), idx: sum[0]}
}

// lock takes u's publish lock, honouring ctx.
func (b *Broker) lock(ctx context.Context, u user) (unlock func(), err error) {
	l := b.locks[u.idx]
	select {
	case l <- struct{}{}:
		return func() { <-l }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A last is a user's last message as far as a node knows.
type last struct {
	streamSeq uint64            // its JetStream sequence; 0: the user has none
	pos       protocol.Position // zero when streamSeq is 0 or the message is not the user's
	at        time.Time         // when the stream stored it
	msg       stored            // the message, when pos is not zero
}

// next returns the position after l: the next Seq of its epoch, or Seq 1
// of a new epoch when l has none.
func (l last) next() protocol.Position {
	if l.pos.Epoch == "" {
		return protocol.Position{Epoch: newEpoch(), Seq: 1}
	}
	return protocol.Position{Epoch: l.pos.Epoch, Seq: l.pos.Seq + 1}
}

var epochEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newEpoch returns 80 random bits: epochs of streams restarted anywhere in
// the cluster do not repeat.
func newEpoch() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return epochEncoding.EncodeToString(b[:])
}

func (b *Broker) cached(key string) (last, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.heads[key]
	return l, ok
}

func (b *Broker) remember(key string, l last) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.heads[key]; !ok && len(b.heads) >= maxHeads {
		for k := range b.heads { // any one: the cache only saves a read
			delete(b.heads, k)
			break
		}
	}
	b.heads[key] = l
}

func (b *Broker) forget(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.heads, key)
}

// wrongLast reports whether err is JetStream refusing a publish because
// the subject's last sequence was not the one expected.
func wrongLast(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
