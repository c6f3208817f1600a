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
