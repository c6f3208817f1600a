package wsauth

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRemoteIP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ remote, want string }{
		{"192.0.2.7:5000", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:5000", "192.0.2.7"},
		{"[2001:db8:1:2:aaaa::1]:5000", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:6000", "2001:db8:1:2::/64"}, // same /64, same key
		{"[2001:db8:1:3::1]:5000", "2001:db8:1:3::/64"},
		{"[fe80::1%eth0]:5000", "fe80::/64"},
		{"not an address", "not an address"},
	} {
		assert.Equal(t, tc.want, remoteIP(&http.Request{RemoteAddr: tc.remote}), tc.remote)
	}
}

func TestPendingLimiter(t *testing.T) {
	t.Parallel()
	l := pendingLimiter{max: 3, maxPerIP: 2}
	assert.True(t, l.acquire("a"))
	assert.True(t, l.acquire("a"))
	assert.False(t, l.acquire("a"), "per-IP cap")
	assert.True(t, l.acquire("b"))
	assert.False(t, l.acquire("c"), "global cap")
	l.release("a")
	assert.True(t, l.acquire("c"))
	assert.Equal(t, 3, l.count())
	for _, ip := range []string{"a", "b", "c"} {
		l.release(ip)
	}
	assert.Equal(t, 0, l.count())
	assert.Empty(t, l.perIP)
}
