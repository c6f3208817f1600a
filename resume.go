package wsauth

import (
	"sync"

	"github.com/wsauth/wsauth/reauth"
	"github.com/wsauth/wsauth/session"
)

// resumeStore keeps, per subject, the messages its closed sessions did not
// deliver, for Options.ResumeFor, bounded like one session's outbox.
type resumeStore struct {
	srv *Server
	mu  sync.Mutex
	m   map[string]*resumed
}

type resumed struct {
	items []session.Item
	bytes int
	entry reauth.Entry
}

func newResumeStore(srv *Server) *resumeStore {
	return &resumeStore{srv: srv, m: make(map[string]*resumed)}
}

// put keeps items for subject and returns those that do not fit (the
// newest), which the caller hands to OnUndelivered.
func (rs *resumeStore) put(subject string, items []session.Item) (rejected []session.Item) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.m[subject]
	if r == nil {
		r = &resumed{}
		rs.m[subject] = r
	}
	for i, it := range items {
		if len(r.items) >= rs.srv.opts.BufferMessages || r.bytes+len(it.Frame) > rs.srv.opts.BufferBytes {
			rejected = items[i:]
			break
		}
		r.items = append(r.items, it)
		r.bytes += len(it.Frame)
	}
	if len(r.items) == 0 {
		delete(rs.m, subject)
		return rejected
	}
	at := rs.srv.opts.Clock.Now().Add(rs.srv.opts.ResumeFor)
	rs.srv.sched.Schedule(&r.entry, at, func() { rs.expire(subject, r) })
	return rejected
}

// take removes and returns what is kept for subject.
func (rs *resumeStore) take(subject string) []session.Item {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.m[subject]
	if r == nil {
		return nil
	}
	delete(rs.m, subject)
	rs.srv.sched.Cancel(&r.entry)
	return r.items
}

// expire runs on the scheduler goroutine when a subject's window passes.
func (rs *resumeStore) expire(subject string, r *resumed) {
	rs.mu.Lock()
	if rs.m[subject] != r {
		rs.mu.Unlock()
		return
	}
	delete(rs.m, subject)
	rs.mu.Unlock()
	rs.srv.handOver(subject, r.items)
}

// flush hands everything still kept to OnUndelivered (on Shutdown).
func (rs *resumeStore) flush() {
	rs.mu.Lock()
	all := rs.m
	rs.m = make(map[string]*resumed)
	rs.mu.Unlock()
	for subject, r := range all {
		rs.srv.sched.Cancel(&r.entry)
		rs.srv.handOver(subject, r.items)
	}
}
