package wsauth

import (
	"errors"
	"fmt"
	"net/http"
)

// A HealthChecker is a part of a Server that can tell whether it works.
// Ready asks the Verifier, and with a Broker this node's membership (or,
// if the membership cannot tell, the Broker), when they implement it:
// jwks.Verifier does (an issuer without keys), and so do natsbroker's
// Broker and members (the NATS connection). Health is called on the
// goroutine of a readiness request: it must not block, and its error is
// shown to whoever can reach ReadyHandler, so it must hold no token and no
// secret.
type HealthChecker interface {
	// Health returns nil when the part works, and otherwise an error that
	// says what does not.
	Health() error
}

// Names of Ready's checks, the keys of ReadyHandler's "checks".
const (
	checkServer   = "server"   // the Server itself: not shutting down
	checkVerifier = "verifier" // Options.Verifier, if a HealthChecker
	checkBroker   = "broker"   // this node's membership of Options.Broker
)

var errShuttingDown = errors.New("shutting down")

type healthCheck struct {
	name string
	err  error
}

// checks runs every check that applies to srv.
func (srv *Server) checks() []healthCheck {
	out := []healthCheck{{name: checkServer}}
	srv.mu.Lock()
	if srv.closing {
		out[0].err = errShuttingDown
	}
	srv.mu.Unlock()
	if hc, ok := srv.opts.Verifier.(HealthChecker); ok {
		out = append(out, healthCheck{checkVerifier, hc.Health()})
	}
	if hc := srv.brokerHealth(); hc != nil {
		out = append(out, healthCheck{checkBroker, hc.Health()})
	}
	return out
}

// brokerHealth returns what tells whether this node reaches its cluster:
// its membership if it can tell (unwrapped from the Observer's timing), or
// else the Broker; nil if neither can, or without a Broker.
func (srv *Server) brokerHealth() HealthChecker {
	m := srv.member
	if om, ok := m.(observedMember); ok {
		m = om.Member
	}
	if hc, ok := m.(HealthChecker); ok {
		return hc
	}
	if hc, ok := srv.opts.Broker.(HealthChecker); ok {
		return hc
	}
	return nil
}

// Ready reports whether the server can take sessions: nil, or an error
// naming every part that cannot. The parts are the server itself (not once
// Shutdown has begun), the Verifier if it is a HealthChecker (a
// jwks.Verifier is not ready while an issuer holds no keys) and, with a
// Broker, this node's membership if it is one, or else the Broker
// (natsbroker: not while the NATS connection is down). Ready does not
// block.
func (srv *Server) Ready() error {
	var errs []error
	for _, c := range srv.checks() {
		if c.err != nil {
			errs = append(errs, fmt.Errorf("wsauth: %s: %w", c.name, c.err))
		}
	}
	return errors.Join(errs...)
}

// healthAnswer is the JSON body of ReadyHandler and LiveHandler.
type healthAnswer struct {
	Status string            `json:"status"`           // "ok" or "unavailable"
	Checks map[string]string `json:"checks,omitempty"` // check name -> "ok" or its error
}

// ReadyHandler serves Ready as JSON, for the readiness probe of a load
// balancer or an orchestrator: 200 with
//
//	{"status":"ok","checks":{"server":"ok","verifier":"ok","broker":"ok"}}
//
// when the server can take sessions, and otherwise 503 with "status":
// "unavailable" and each failing check's error in place of its "ok" (a
// check that does not apply is absent). It answers GET and HEAD, and 405
// to other methods. Mount it on a path of your own, e.g. "/readyz", and
// keep it where only your infrastructure reaches it: the errors name
// issuers, JWK Set URLs and the broker's state, never a token, a user or
// an address.
func (srv *Server) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthMethod(w, r) {
			return
		}
		answer := healthAnswer{Status: "ok", Checks: make(map[string]string)}
		status := http.StatusOK
		for _, c := range srv.checks() {
			answer.Checks[c.name] = "ok"
			if c.err != nil {
				answer.Checks[c.name] = c.err.Error()
				answer.Status, status = "unavailable", http.StatusServiceUnavailable
			}
		}
		writeHealth(w, status, answer)
	})
}

// LiveHandler answers 200 {"status":"ok"} to GET and HEAD while the
// process serves HTTP, whatever Ready says, for a liveness probe. An
// identity provider or a broker that is down is no reason to restart the
// process: the server gets keys and connection back on its own, and a
// restart would close every session. It answers 405 to other methods.
func (srv *Server) LiveHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if healthMethod(w, r) {
			writeHealth(w, http.StatusOK, healthAnswer{Status: "ok"})
		}
	})
}

// healthMethod refuses methods other than GET and HEAD.
func healthMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

func writeHealth(w http.ResponseWriter, status int, answer healthAnswer) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, answer)
}
