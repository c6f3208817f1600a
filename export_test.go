package wsauth

// The defaults of Options, for the tests of package wsauth_test.
const (
	DefaultAuthTimeout     = defaultAuthTimeout
	DefaultMaxPreAuthFrame = defaultMaxPreAuthFrame
	DefaultMaxFrame        = defaultMaxFrame
	DefaultReauthGrace     = defaultReauthGrace
)

// Holdings counts what a server holds for connections, for the leak tests
// of package wsauth_test: once every connection has ended, all of it is
// zero.
type Holdings struct {
	PendingSlots int // slots of the pending limiter
	PendingIPs   int // addresses the pending limiter counts
	Conns        int // upgraded sessions that have not finished
	Registered   int // authenticated sessions in the registry
	Scheduled    int // scheduler entries: sessions' deadlines
	Streams      int // users' stream records (with a Broker)
}

// HoldingsOf reads srv's holdings.
func HoldingsOf(srv *Server) Holdings {
	srv.mu.Lock()
	conns := len(srv.conns)
	srv.mu.Unlock()
	srv.pending.mu.Lock()
	ips := len(srv.pending.perIP)
	srv.pending.mu.Unlock()
	srv.streams.mu.Lock()
	streams := len(srv.streams.m)
	srv.streams.mu.Unlock()
	return Holdings{
		PendingSlots: srv.pending.count(),
		PendingIPs:   ips,
		Conns:        conns,
		Registered:   srv.registry.Len(),
		Scheduled:    srv.sched.Len(),
		Streams:      streams,
	}
}
