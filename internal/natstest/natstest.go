// Package natstest runs a NATS server with JetStream in the test's own
// process, for the tests of natsbroker and of the demo's cluster: no binary
// to install, and a server a test can stop and start again.
package natstest

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a NATS server with JetStream on a loopback port and a store
// directory that both survive its restarts. Its methods are safe for
// concurrent use.
type Server struct {
	tb   testing.TB
	dir  string
	port int

	mu sync.Mutex
	ns *server.Server
}

// Start starts a server that is shut down when tb ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{tb: tb, dir: tb.TempDir(), port: -1}
	s.Start()
	tb.Cleanup(s.Stop)
	return s
}

// Start starts the server again, on the same port and directory, after
// Stop.
func (s *Server) Start() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns != nil {
		return
	}
	ns, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      s.port,
		JetStream: true,
		StoreDir:  s.dir,
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		s.tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		s.tb.Fatal("nats-server not ready within 10s")
	}
	s.port = ns.Addr().(*net.TCPAddr).Port
	s.ns = ns
}

// Stop shuts the server down and waits until it has.
func (s *Server) Stop() {
	s.mu.Lock()
	ns := s.ns
	s.ns = nil
	s.mu.Unlock()
	if ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

// URL is the server's client URL, nats://127.0.0.1:PORT.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "nats://127.0.0.1:" + strconv.Itoa(s.port)
}
