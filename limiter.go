package wsauth

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
)

// The caps on unauthenticated connections (Options.MaxPending and
// MaxPendingPerIP), checked before the upgrade, and the default key of the
// per-IP cap.

// pendingLimiter counts unauthenticated connections, globally and per IP.
type pendingLimiter struct {
	max, maxPerIP int
	mu            sync.Mutex
	total         int
	perIP         map[string]int
}

// acquire takes a slot for ip, or reports that a cap is full.
func (l *pendingLimiter) acquire(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max || l.perIP[ip] >= l.maxPerIP {
		return false
	}
	if l.perIP == nil {
		l.perIP = make(map[string]int)
	}
	l.total++
	l.perIP[ip]++
	return true
}

func (l *pendingLimiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

func (l *pendingLimiter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// remoteIP is the default ClientIP: the host of RemoteAddr, with IPv6
// addresses cut to their /64, since one host commonly holds a whole /64 and
// could otherwise fill the global cap from one network.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}
