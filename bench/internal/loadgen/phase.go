package loadgen

import (
	"context"
	"encoding/json"
	"math"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// Stats is what one phase measured.
type Stats struct {
	Msgs    int64         // round-trips, pushed messages received, or handshakes
	Elapsed time.Duration // wall time of the phase
	Hist    *Histogram    // latencies: round-trip, push-to-receive, or handshake
	// Allocs is the number of heap objects the whole process allocated
	// during the phase (clients included).
	Allocs uint64
}

// Rate returns Msgs per second.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Msgs) / s.Elapsed.Seconds()
}

// AllocsPerMsg returns Allocs / Msgs.
func (s Stats) AllocsPerMsg() float64 {
	if s.Msgs == 0 {
		return 0
	}
	return float64(s.Allocs) / float64(s.Msgs)
}

// Add accumulates o into s (for interleaved rounds).
func (s *Stats) Add(o Stats) {
	s.Msgs += o.Msgs
	s.Elapsed += o.Elapsed
	s.Allocs += o.Allocs
	if s.Hist == nil {
		s.Hist = new(Histogram)
	}
	if o.Hist != nil {
		s.Hist.Merge(o.Hist)
	}
}

// Row returns s as a table row.
func (s Stats) Row(target, mode string, conns, payload int) Row {
	r := Row{Target: target, Mode: mode, Conns: conns, Payload: payload, Msgs: s.Msgs, Elapsed: s.Elapsed}
	if s.Hist != nil {
		r.P50, r.P99 = s.Hist.Quantile(0.50), s.Hist.Quantile(0.99)
	}
	return r
}

// Progress, if set, is called every few seconds during a timed phase with
// the time so far and the messages so far.
type Progress func(elapsed time.Duration, msgs int64, h *Histogram)

// PushFunc sends data to the connection whose session id is session.
type PushFunc func(session string, data json.RawMessage) error

type phaseKind int

const (
	phaseEcho phaseKind = iota
	phasePush
	phaseCount
)

type phase struct {
	kind    phaseKind
	payload int
	pace    time.Duration // echo: least time between two sends of a connection
	hist    *Histogram

	active  atomic.Int64 // echo: connections still looping
	sent    atomic.Int64 // push: messages pushed
	recv    atomic.Int64 // push, count: messages received
	stopped atomic.Bool  // no new messages
	credits chan *Conn   // push: a connection may take one more message

	done      chan struct{}
	doneOnce  sync.Once
	aborted   chan struct{}
	abortOnce sync.Once
	err       error // set before aborted is closed
}

func newPhase(kind phaseKind, payload int) *phase {
	return &phase{kind: kind, payload: payload, hist: new(Histogram),
		done: make(chan struct{}), aborted: make(chan struct{})}
}

func (ph *phase) finish() { ph.doneOnce.Do(func() { close(ph.done) }) }

func (ph *phase) abort(err error) {
	ph.abortOnce.Do(func() {
		ph.err = err
		close(ph.aborted)
	})
}

// onData runs on a connection's read goroutine for every message frame.
func (ph *phase) onData(c *Conn, frame []byte) {
	ts, idx, ok := parseMarker(frame)
	switch ph.kind {
	case phaseEcho:
		if !ok || idx != c.Index {
			return // another connection's message, broadcast by the server
		}
		ph.hist.Record(time.Duration(time.Now().UnixNano() - ts))
		if ph.pace > 0 {
			if wait := ph.pace - time.Duration(time.Now().UnixNano()-ts); wait > 0 {
				time.AfterFunc(wait, func() { ph.next(c) })
				return
			}
		}
		ph.next(c)
	case phasePush:
		if ok {
			ph.hist.Record(time.Duration(time.Now().UnixNano() - ts))
			if idx == c.Index {
				select {
				case ph.credits <- c:
				default:
				}
			}
		}
		if r := ph.recv.Add(1); ph.stopped.Load() && r == ph.sent.Load() {
			ph.finish()
		}
	case phaseCount:
		ph.recv.Add(1)
		if ok {
			ph.hist.Record(time.Duration(time.Now().UnixNano() - ts))
		}
	}
}

// next is called when one of c's echo messages came back: it sends c's
// next message, or ends c's part of the phase once nothing is in flight.
func (ph *phase) next(c *Conn) {
	if !ph.stopped.Load() && c.toSend.Add(-1) >= 0 {
		if err := c.sendMessage(ph.payload); err != nil {
			ph.abort(err)
		}
		return
	}
	if c.inFlight.Add(-1) == 0 && ph.active.Add(-1) == 0 {
		ph.finish()
	}
}

func (c *Conn) sendMessage(size int) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.pool.target.Centrifuge {
		c.buf = appendCentrifugeRPC(c.buf[:0], c.ids.id(), time.Now().UnixNano(), c.Index, size)
	} else {
		c.buf = appendClientMessage(c.buf[:0], time.Now().UnixNano(), c.Index, size, c.token)
	}
	return c.ws.WriteMessage(gws.OpcodeText, c.buf)
}

// Echo runs msgs round-trips spread evenly over the pool's connections,
// each connection with one message in flight: it sends a message of
// payload bytes and the next one when the server echoed it back.
func (p *Pool) Echo(ctx context.Context, msgs int64, payload int) (Stats, error) {
	return p.echo(ctx, msgs, 0, payload, 0, 1, nil)
}

// EchoPipelined runs msgs round-trips like Echo, but each connection keeps
// window messages in flight: it sends window messages at once, then one
// more for each reply, and reads every reply.
func (p *Pool) EchoPipelined(ctx context.Context, msgs int64, payload, window int) (Stats, error) {
	return p.echo(ctx, msgs, 0, payload, 0, window, nil)
}

// EchoFor runs round-trips on every connection for d, window messages in
// flight on each (1: one round-trip at a time).
func (p *Pool) EchoFor(ctx context.Context, d time.Duration, payload, window int, progress Progress) (Stats, error) {
	return p.echo(ctx, math.MaxInt64, d, payload, 0, window, progress)
}

// EchoPaced runs round-trips on every connection for d, at most one every
// pace per connection: an open load of len(Conns)/pace messages per second
// as long as round-trips are shorter than pace, so that latency measures
// the server's responsiveness rather than the queue of a saturated machine.
func (p *Pool) EchoPaced(ctx context.Context, d, pace time.Duration, payload int) (Stats, error) {
	return p.echo(ctx, math.MaxInt64, d, payload, pace, 1, nil)
}

func (p *Pool) echo(ctx context.Context, msgs int64, d time.Duration, payload int, pace time.Duration, window int, progress Progress) (Stats, error) {
	if err := checkPayload(payload); err != nil {
		return Stats{}, err
	}
	window = max(window, 1)
	ph := newPhase(phaseEcho, payload)
	ph.pace = pace
	n := int64(len(p.Conns))
	quota := func(i int) int64 {
		if msgs == math.MaxInt64 {
			return msgs
		}
		q := msgs / n
		if int64(i) < msgs%n {
			q++
		}
		return q
	}
	var active int64
	first := make([]int64, len(p.Conns)) // messages each connection sends at once
	for i, c := range p.Conns {
		q := quota(i)
		first[i] = min(q, int64(window))
		c.toSend.Store(q - first[i])
		c.inFlight.Store(first[i])
		if q > 0 {
			active++
		}
	}
	if active == 0 {
		return Stats{Hist: ph.hist}, nil
	}
	ph.active.Store(active)
	p.phase.Store(ph)
	defer p.phase.Store(nil)
	start, allocs := time.Now(), heapObjects()
sendFirst:
	for i, c := range p.Conns {
		if first[i] == 0 {
			continue
		}
		if pace > 0 {
			// Spread the connections' sends over the period.
			time.AfterFunc(pace*time.Duration(i)/time.Duration(n), func() {
				if err := c.sendMessage(payload); err != nil {
					ph.abort(err)
				}
			})
			continue
		}
		for range first[i] {
			if err := c.sendMessage(payload); err != nil {
				ph.abort(err)
				break sendFirst
			}
		}
	}
	err := p.run(ctx, ph, start, d, progress, ph.hist.Count)
	return Stats{Msgs: int64(ph.hist.Count()), Elapsed: time.Since(start), Hist: ph.hist,
		Allocs: heapObjects() - allocs}, err
}

// run waits for ph, stopping it after d (0: no limit) and reporting
// progress every 5 seconds.
func (p *Pool) run(ctx context.Context, ph *phase, start time.Time, d time.Duration, progress Progress, count func() uint64) error {
	var deadline <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-deadline:
			// A nil channel never fires again.
			deadline = nil
			ph.stopped.Store(true)
			if ph.kind == phaseCount {
				return nil
			}
			// Echo: each connection stops at its next reply. Push: the
			// pushers stop at their next credit and then finish the phase
			// once what they sent arrived.
		case <-tick.C:
			if progress != nil {
				progress(time.Since(start), int64(count()), ph.hist)
			}
		case <-ph.done:
			return nil
		case <-ph.aborted:
			return ph.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Push pushes msgs messages of payload bytes from the server, spread over
// the pool's connections, each with at most window messages in flight: a
// connection gets its next message when it received one. GOMAXPROCS pusher
// goroutines call push; the latency is from the push call to the receipt.
func (p *Pool) Push(ctx context.Context, msgs int64, payload, window int, push PushFunc) (Stats, error) {
	return p.push(ctx, msgs, 0, payload, window, push, nil)
}

// PushFor pushes for d.
func (p *Pool) PushFor(ctx context.Context, d time.Duration, payload, window int, push PushFunc, progress Progress) (Stats, error) {
	return p.push(ctx, math.MaxInt64, d, payload, window, push, progress)
}

func (p *Pool) push(ctx context.Context, msgs int64, d time.Duration, payload, window int, push PushFunc, progress Progress) (Stats, error) {
	if err := checkPayload(payload); err != nil {
		return Stats{}, err
	}
	window = max(window, 1)
	ph := newPhase(phasePush, payload)
	if msgs <= 0 {
		return Stats{Hist: ph.hist}, nil
	}
	ph.credits = make(chan *Conn, len(p.Conns)*window)
	for range window {
		for _, c := range p.Conns {
			ph.credits <- c
		}
	}
	p.phase.Store(ph)
	defer p.phase.Store(nil)
	start, allocs := time.Now(), heapObjects()
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			var data []byte
			for {
				var c *Conn
				select {
				case c = <-ph.credits:
				case <-ph.done:
					return
				case <-ph.aborted:
					return
				case <-ctx.Done():
					return
				}
				if ph.stopped.Load() {
					return
				}
				if ph.sent.Add(1) > msgs {
					ph.sent.Add(-1)
					return
				}
				data = appendPushData(data[:0], time.Now().UnixNano(), c.Index, payload)
				if err := push(c.session, data); err != nil {
					ph.abort(err)
					return
				}
			}
		})
	}
	// When every pusher stopped (sent reached msgs, or the deadline), the
	// phase ends once what was sent arrived.
	pushersDone := make(chan struct{})
	go func() {
		defer close(pushersDone)
		wg.Wait()
		ph.stopped.Store(true)
		if ph.recv.Load() == ph.sent.Load() {
			ph.finish()
		}
	}()
	err := p.run(ctx, ph, start, d, progress, func() uint64 { return uint64(ph.recv.Load()) })
	if err != nil {
		ph.abort(err) // stops the pushers
	}
	<-pushersDone
	return Stats{Msgs: ph.recv.Load(), Elapsed: time.Since(start), Hist: ph.hist,
		Allocs: heapObjects() - allocs}, err
}

// CountFor counts the message frames the server sends for d, such as the
// demo's ticks.
func (p *Pool) CountFor(ctx context.Context, d time.Duration, progress Progress) (Stats, error) {
	ph := newPhase(phaseCount, 0)
	p.phase.Store(ph)
	defer p.phase.Store(nil)
	start, allocs := time.Now(), heapObjects()
	err := p.run(ctx, ph, start, d, progress, func() uint64 { return uint64(ph.recv.Load()) })
	return Stats{Msgs: ph.recv.Load(), Elapsed: time.Since(start), Hist: ph.hist,
		Allocs: heapObjects() - allocs}, err
}

var heapObjectsSample = []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
var heapObjectsMu sync.Mutex

// heapObjects returns the number of heap objects allocated so far.
func heapObjects() uint64 {
	heapObjectsMu.Lock()
	defer heapObjectsMu.Unlock()
	metrics.Read(heapObjectsSample)
	if heapObjectsSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return heapObjectsSample[0].Value.Uint64()
}
