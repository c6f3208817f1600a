package broker

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// MemoryOptions bound what a Memory keeps. The zero value of each field
// means its default.
type MemoryOptions struct {
	// KeepFor is how long a message is kept for resume. Default 2 minutes.
	KeepFor time.Duration
	// MaxMessages and MaxBytes (of data) bound what is kept per user: past
	// either, the user's oldest messages go first. Defaults 256 and 1 MiB.
	MaxMessages int
	MaxBytes    int
	// MaxUsers bounds how many users' streams are kept, MaxTotalBytes the
	// data of all of them. Past MaxTotalBytes the messages of the user
	// written to longest ago go first; past MaxUsers, that user's stream
	// itself (its numbering starts again in a new epoch). Defaults 10,000
	// and 64 MiB.
	MaxUsers      int
	MaxTotalBytes int
	// RevokeFor is how long revocations are kept for the nodes that join
	// later: at least as long as the longest-lived token. Default 24 hours.
	RevokeFor time.Duration
	// Now is the clock of KeepFor and RevokeFor. Default time.Now.
	Now func() time.Time
}

// Memory is the broker of one process: it keeps users' streams in memory
// and connects the Servers of the process that join it. A Server with a
// Memory of its own resumes clients across reconnects to it; several
// Servers sharing one are a cluster in a process, as tests want. Its zero
// value is not usable: use NewMemory.
type Memory struct {
	opts  MemoryOptions
	epoch string // prefix of the streams' epochs: unique per Memory

	mu      sync.Mutex
	gen     uint64 // numbers the streams' epochs
	streams map[session.Principal]*memStream
	lru     list.List // of *memStream, the one written to longest ago first
	total   int       // bytes of data kept
	members map[string]*memMember
	revoked []Revocation // oldest first, within RevokeFor
	once    map[string]onceValue
}

type onceValue struct {
	value   []byte
	expires time.Time
}

// maxRevocations bounds the revocations a Memory keeps.
const maxRevocations = 100000

type memStream struct {
	p        session.Principal
	epoch    string
	head     uint64
	msgs     []kept // oldest first
	bytes    int
	interest map[*memMember]bool
	elem     *list.Element
}

type kept struct {
	seq  uint64
	at   time.Time
	data json.RawMessage
}

// NewMemory returns an empty Memory.
func NewMemory(opts MemoryOptions) *Memory {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if opts.KeepFor <= 0 {
		opts.KeepFor = 2 * time.Minute
	}
	def(&opts.MaxMessages, 256)
	def(&opts.MaxBytes, 1<<20)
	def(&opts.MaxUsers, 10000)
	def(&opts.MaxTotalBytes, 64<<20)
	if opts.RevokeFor <= 0 {
		opts.RevokeFor = 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var b [5]byte
	_, _ = rand.Read(b[:])
	return &Memory{
		opts:    opts,
		epoch:   base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]),
		streams: make(map[session.Principal]*memStream),
		members: make(map[string]*memMember),
	}
}

// Join makes node a member of m's cluster.
func (m *Memory) Join(_ context.Context, node string, h Handler) (Member, error) {
	mm := &memMember{m: m, node: node, h: h}
	mm.cond.L = &mm.mu
	m.mu.Lock()
	m.members[node] = mm
	m.dropOldRevocations()
	kept := slices.Clone(m.revoked)
	m.mu.Unlock()
	for _, r := range kept {
		h.Revoke(r)
	}
	mm.done = make(chan struct{})
	go mm.run()
	return mm, nil
}

// memMember is one node of a Memory. What other members send it goes
// through a queue that its own goroutine hands to its Handler, in order.
type memMember struct {
	m    *Memory
	node string
	h    Handler
	done chan struct{}

	mu     sync.Mutex
	cond   sync.Cond
	queue  []func(Handler)
	closed bool
}

func (mm *memMember) push(f func(Handler)) {
	mm.mu.Lock()
	if !mm.closed {
		mm.queue = append(mm.queue, f)
		mm.cond.Signal()
	}
	mm.mu.Unlock()
}

func (mm *memMember) run() {
	defer close(mm.done)
	for {
		mm.mu.Lock()
		for len(mm.queue) == 0 && !mm.closed {
			mm.cond.Wait()
		}
		if mm.closed {
			mm.mu.Unlock()
			return
		}
		q := mm.queue
		mm.queue = nil
		mm.mu.Unlock()
		for _, f := range q {
			f(mm.h)
		}
	}
}

// others returns the members other than mm. The caller holds m.mu.
func (mm *memMember) others() []*memMember {
	out := make([]*memMember, 0, len(mm.m.members))
	for _, o := range mm.m.members {
		if o != mm {
			out = append(out, o)
		}
	}
	return out
}

func (mm *memMember) Publish(_ context.Context, p session.Principal, data json.RawMessage) (protocol.Position, error) {
	m := mm.m
	data = slices.Clone(data)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.members[mm.node] != mm {
		return protocol.Position{}, ErrUnavailable
	}
	st := m.stream(p)
	if st.epoch == "" {
		m.gen++
		st.epoch = m.epoch + "-" + strconv.FormatUint(m.gen, 36)
	}
	st.head++
	st.msgs = append(st.msgs, kept{seq: st.head, at: m.opts.Now(), data: data})
	st.bytes += len(data)
	m.total += len(data)
	m.lru.MoveToBack(st.elem)
	for len(st.msgs) > 1 && (len(st.msgs) > m.opts.MaxMessages || st.bytes > m.opts.MaxBytes) {
		m.dropOldest(st)
	}
	m.enforce()
	msg := Message{Principal: p, Position: protocol.Position{Epoch: st.epoch, Seq: st.head}, Data: data}
	for o, on := range st.interest {
		if on && o != mm {
			o.push(func(h Handler) { h.Deliver(msg) })
		}
	}
	return msg.Position, nil
}

// stream returns p's stream, making an empty one if there is none. The
// caller holds m.mu.
func (m *Memory) stream(p session.Principal) *memStream {
	st := m.streams[p]
	if st == nil {
		st = &memStream{p: p, interest: map[*memMember]bool{}}
		st.elem = m.lru.PushBack(st)
		m.streams[p] = st
	}
	return st
}

func (m *Memory) dropOldest(st *memStream) {
	n := len(st.msgs[0].data)
	st.msgs[0] = kept{}
	st.msgs = st.msgs[1:]
	st.bytes -= n
	m.total -= n
}

// enforce applies MaxTotalBytes and MaxUsers, the stream written to longest
// ago first. The caller holds m.mu.
func (m *Memory) enforce() {
	for e := m.lru.Front(); e != nil && m.total > m.opts.MaxTotalBytes; e = e.Next() {
		st := e.Value.(*memStream)
		for len(st.msgs) > 0 && m.total > m.opts.MaxTotalBytes {
			m.dropOldest(st)
		}
	}
	for e := m.lru.Front(); e != nil && len(m.streams) > m.opts.MaxUsers; {
		next := e.Next()
		st := e.Value.(*memStream)
		if len(st.interest) == 0 || len(m.streams) > 2*m.opts.MaxUsers {
			for len(st.msgs) > 0 {
				m.dropOldest(st)
			}
			m.lru.Remove(e)
			delete(m.streams, st.p)
		}
		e = next
	}
}

// expire drops st's messages older than KeepFor. The caller holds m.mu.
func (m *Memory) expire(st *memStream) {
	cutoff := m.opts.Now().Add(-m.opts.KeepFor)
	for len(st.msgs) > 0 && st.msgs[0].at.Before(cutoff) {
		m.dropOldest(st)
	}
}

func (mm *memMember) Interest(_ context.Context, p session.Principal, on bool) error {
	m := mm.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if on {
		m.stream(p).interest[mm] = true
		return nil
	}
	if st := m.streams[p]; st != nil {
		delete(st.interest, mm)
		if st.epoch == "" && len(st.interest) == 0 {
			m.lru.Remove(st.elem)
			delete(m.streams, p)
		}
	}
	return nil
}

func (mm *memMember) History(_ context.Context, p session.Principal, after protocol.Position) ([]Message, protocol.Position, error) {
	m := mm.m
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.streams[p]
	var head protocol.Position
	if st != nil {
		head = protocol.Position{Epoch: st.epoch, Seq: st.head}
	}
	if after.Epoch == "" {
		return nil, head, nil
	}
	if st == nil || after.Epoch != st.epoch || after.Seq > st.head {
		return nil, head, ErrLost
	}
	m.expire(st)
	first := st.head + 1
	if len(st.msgs) > 0 {
		first = st.msgs[0].seq
	}
	if after.Seq+1 < first {
		return nil, head, ErrLost
	}
	var out []Message
	for _, k := range st.msgs {
		if k.seq > after.Seq {
			out = append(out, Message{Principal: p, Position: protocol.Position{Epoch: st.epoch, Seq: k.seq}, Data: k.data})
		}
	}
	return out, head, nil
}

func (mm *memMember) Broadcast(_ context.Context, data json.RawMessage) error {
	data = slices.Clone(data)
	mm.m.mu.Lock()
	others := mm.others()
	mm.m.mu.Unlock()
	for _, o := range others {
		o.push(func(h Handler) { h.Broadcast(data) })
	}
	return nil
}

func (mm *memMember) Send(_ context.Context, node, sessionID string, data json.RawMessage) error {
	mm.m.mu.Lock()
	o := mm.m.members[node]
	mm.m.mu.Unlock()
	if o == nil || o == mm || !o.h.Send(sessionID, slices.Clone(data)) {
		return ErrNoSession
	}
	return nil
}

func (mm *memMember) Revoke(_ context.Context, r Revocation) error {
	m := mm.m
	if r.At.IsZero() {
		r.At = m.opts.Now()
	}
	m.mu.Lock()
	m.dropOldRevocations()
	m.revoked = append(m.revoked, r)
	if n := len(m.revoked); n > 1 && r.At.Before(m.revoked[n-2].At) {
		slices.SortStableFunc(m.revoked, func(a, b Revocation) int { return a.At.Compare(b.At) })
	}
	if len(m.revoked) > maxRevocations {
		m.revoked = slices.Delete(m.revoked, 0, len(m.revoked)-maxRevocations)
	}
	others := mm.others()
	m.mu.Unlock()
	for _, o := range others {
		o.push(func(h Handler) { h.Revoke(r) })
	}
	return nil
}

// dropOldRevocations forgets the revocations older than RevokeFor. The
// caller holds m.mu.
func (m *Memory) dropOldRevocations() {
	cutoff := m.opts.Now().Add(-m.opts.RevokeFor)
	i := 0
	for i < len(m.revoked) && m.revoked[i].At.Before(cutoff) {
		i++
	}
	m.revoked = slices.Delete(m.revoked, 0, i)
}

func (mm *memMember) PutOnce(_ context.Context, key string, value []byte, ttl time.Duration) error {
	m := mm.m
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.once == nil {
		m.once = make(map[string]onceValue)
	}
	if len(m.once) >= maxRevocations { // bounded: drop the expired ones
		for k, v := range m.once {
			if !now.Before(v.expires) {
				delete(m.once, k)
			}
		}
		if len(m.once) >= maxRevocations {
			return ErrUnavailable
		}
	}
	m.once[key] = onceValue{slices.Clone(value), now.Add(ttl)}
	return nil
}

func (mm *memMember) TakeOnce(_ context.Context, key string) ([]byte, error) {
	m := mm.m
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.once[key]
	delete(m.once, key)
	if !ok || !m.opts.Now().Before(v.expires) {
		return nil, ErrNotFound
	}
	return v.value, nil
}

func (mm *memMember) Leave() error {
	m := mm.m
	m.mu.Lock()
	if m.members[mm.node] == mm {
		delete(m.members, mm.node)
	}
	for p, st := range m.streams {
		delete(st.interest, mm)
		if st.epoch == "" && len(st.interest) == 0 {
			m.lru.Remove(st.elem)
			delete(m.streams, p)
		}
	}
	m.mu.Unlock()
	mm.mu.Lock()
	mm.closed = true
	mm.queue = nil
	mm.cond.Signal()
	mm.mu.Unlock()
	<-mm.done
	return nil
}
