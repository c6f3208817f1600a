package wsauth

import (
	"time"

	"github.com/lxzan/gws"

	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// Expiry handling. Every session owns one scheduler entry; phase says what
// it means when it fires. For a token expiring at exp, authenticated at t0,
// with ExpiryReauth:
//
//	t0 ... exp-lead: reauth_required ... exp: buffer ... exp+grace: close 4440
//
// where lead = min(ReauthLead, (exp-t0)/2). A successful reauth at any point
// reschedules from the new token's exp.

// scheduleExpiryLocked schedules the first expiry phase after a successful
// authentication at now.
func (s *Session) scheduleExpiryLocked(now time.Time) {
	exp := s.ident.ExpiresAt
	switch {
	case s.srv.opts.Expiry == ExpiryIgnore || exp.IsZero():
		s.phase = phaseNone
		s.srv.sched.Cancel(&s.entry)
	case s.srv.opts.Expiry == ExpiryClose:
		s.setPhaseLocked(phaseExpire, exp)
	default:
		lead := min(s.srv.opts.ReauthLead, exp.Sub(now)/2)
		s.setPhaseLocked(phaseLead, exp.Add(-lead))
	}
}

func (s *Session) setPhaseLocked(p phase, at time.Time) {
	s.phase = p
	s.srv.sched.Schedule(&s.entry, at, s.timerFn)
}

// onTimer runs on the scheduler's goroutine: it must not block, so socket
// writes are handed to gws's per-connection write queue or a goroutine.
func (s *Session) onTimer() {
	s.mu.Lock()
	if s.state == session.Closed {
		s.mu.Unlock()
		return
	}
	exp := s.ident.ExpiresAt
	grace := s.srv.opts.ReauthGrace
	switch s.phase {
	case phaseAuth:
		if s.state == session.Pending && s.markClosedLocked(closeAuthTimeout) {
			s.mu.Unlock()
			go s.writeClose(closeAuthTimeout)
			return
		}
	case phaseLead:
		s.setPhaseLocked(phaseExpire, exp)
		s.reauthAsked = true
		s.askedAt = s.srv.opts.Clock.Now()
		frame := protocol.AppendServer(nil, protocol.ServerFrame{Type: protocol.TypeReauthRequired, Exp: exp.Unix(), Deadline: exp.Add(grace).Unix()})
		s.socket.WriteAsync(gws.OpcodeText, frame, nil)
	case phaseExpire:
		if s.srv.opts.Expiry == ExpiryClose {
			s.markClosedLocked(closeSessionExpired)
			s.mu.Unlock()
			go s.writeClose(closeSessionExpired)
			return
		}
		s.setStateLocked(session.Expired)
		s.paused = true
		s.wakeLocked() // senders waiting for room: overflow now closes
		s.setPhaseLocked(phaseGrace, exp.Add(grace))
	case phaseGrace:
		if s.markClosedLocked(closeSessionExpired) {
			s.mu.Unlock()
			go s.writeClose(closeSessionExpired)
			return
		}
	}
	s.mu.Unlock()
}
