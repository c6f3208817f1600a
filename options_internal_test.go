package wsauth

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestOriginAllowed(t *testing.T) {
	t.Parallel()
	o := Options{OriginPatterns: []string{"*.example.com", "localhost:*", "https://app.test"}}
	cases := []struct {
		origin, host string
		want         bool
	}{
		{"", "srv:1", true},
		{"http://srv:1", "srv:1", true},
		{"http://SRV:1", "srv:1", true},
		{"http://srv:2", "srv:1", false},
		{"https://a.example.com", "srv", true},
		{"https://example.com", "srv", false},
		{"http://localhost:3000", "srv", true},
		{"https://app.test", "srv", true},
		{"http://app.test", "srv", false},
		{"https://user@a.example.com", "srv", false},
		{"https://a.example.com/path", "srv", false},
		{"null", "srv", false},
		{"https://", "srv", false},
		// Host patterns admit web pages only.
		{"ftp://a.example.com", "srv", false},
		{"chrome-extension://a.example.com", "srv", false},
		{"ftp://srv:1", "srv:1", false},
		{"HTTPS://a.example.com", "srv", true},
	}
	for _, tc := range cases {
		r := &http.Request{Host: tc.host, Header: http.Header{}}
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		assert.Equal(t, tc.want, o.originAllowed(r), "origin %q host %q", tc.origin, tc.host)
	}
	skip := Options{InsecureSkipOriginCheck: true}
	assert.True(t, skip.originAllowed(&http.Request{Host: "a", Header: http.Header{"Origin": {"https://evil"}}}))
}

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
