// Package flakyjwks serves a JWK Set the way a failing identity provider
// does, for the fault-injection tests of wsauth and its jwks package: each
// fetch gets the next answer of a cycle, the upstream's current set or one
// of the faults (down, garbage, no usable key, a reset, a hang, a body too
// large).
package flakyjwks

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Answer is what one fetch gets.
type Answer int

const (
	Good      Answer = iota // the upstream's set, as it serves it now
	Down                    // 503
	Garbage                 // 200 with an HTML page
	Truncated               // 200 with the first half of the upstream's set
	NoKeys                  // 200 with {"keys":[]}
	NotASet                 // 200 with {}
	Unusable                // 200 with a set whose only key verifies nothing (a shared secret)
	Reset                   // the connection closed without an answer
	Hang                    // no answer until the client gives up
	TooLarge                // 200 with the upstream's set padded by HugePadding bytes
	answers
)

// HugePadding is how many bytes of whitespace TooLarge adds to the set.
const HugePadding = 64 << 10

var names = [...]string{"good", "down", "garbage", "truncated", "no keys", "not a set", "unusable", "reset", "hang", "too large"}

func (a Answer) String() string {
	if a >= 0 && a < answers {
		return names[a]
	}
	return fmt.Sprintf("Answer(%d)", int(a))
}

// Server answers JWK Set fetches in a cycle.
type Server struct {
	// URL is the JWK Set URL to configure in place of the upstream's.
	URL      string
	upstream string
	cycle    []Answer
	fetches  atomic.Int64
	served   [answers]atomic.Int64
	hanging  atomic.Int64
	stop     chan struct{} // closed at the end of the test: no more hangs
	client   *http.Client
	onHang   atomic.Pointer[func()]
}

// New starts a Server in front of the JWK Set at upstream; it is closed at
// the end of the test. The fetches get the answers of cycle in turn,
// starting with the first.
func New(t testing.TB, upstream string, cycle ...Answer) *Server {
	t.Helper()
	if len(cycle) == 0 {
		t.Fatal("flakyjwks: New without answers")
	}
	s := &Server{upstream: upstream, cycle: cycle, stop: make(chan struct{}),
		// No idle connection to the upstream outlives a fetch.
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	hs := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		close(s.stop)
		hs.Close()
	})
	s.URL = hs.URL + "/jwks.json"
	return s
}

// OnHang makes f run at the start of every Hang answer, on the goroutine
// that hangs, before it hangs.
func (s *Server) OnHang(f func()) { s.onHang.Store(&f) }

// Fetches returns how many fetches the server has answered or is answering.
func (s *Server) Fetches() int { return int(s.fetches.Load()) }

// Served returns how many fetches got a.
func (s *Server) Served(a Answer) int { return int(s.served[a].Load()) }

// Hanging returns how many fetches hang now.
func (s *Server) Hanging() int { return int(s.hanging.Load()) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	a := s.cycle[(s.fetches.Add(1)-1)%int64(len(s.cycle))]
	s.served[a].Add(1)
	switch a {
	case Down:
		http.Error(w, "identity provider down", http.StatusServiceUnavailable)
	case Garbage:
		s.write(w, []byte("<html>maintenance</html>"))
	case NoKeys:
		s.write(w, []byte(`{"keys":[]}`))
	case NotASet:
		s.write(w, []byte(`{}`))
	case Unusable:
		s.write(w, []byte(`{"keys":[{"kty":"oct","kid":"secret","k":"c2VjcmV0"}]}`))
	case Reset:
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = c.Close()
		}
	case Hang:
		s.hanging.Add(1)
		defer s.hanging.Add(-1)
		if f := s.onHang.Load(); f != nil {
			(*f)()
		}
		select {
		case <-r.Context().Done():
		case <-s.stop:
		}
	default:
		body, err := s.fetchUpstream(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		switch a {
		case Truncated:
			body = body[:len(body)/2]
		case TooLarge:
			body = append(body, bytes.Repeat([]byte(" "), HugePadding)...)
		}
		s.write(w, body)
	}
}

func (s *Server) write(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (s *Server) fetchUpstream(r *http.Request) ([]byte, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, s.upstream, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("upstream answered %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}
