package broker

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// Errors of a Member's methods.
var (
	// ErrUnavailable: the broker cannot reach the rest of the cluster now (a
	// NATS connection down, say). The node's own sessions are unaffected,
	// and the broker reconnects by itself. What was asked most likely did
	// not happen, but may have: a Publish whose acknowledgement was lost is
	// in the stream, a Send that timed out may have been delivered.
	ErrUnavailable = errors.New("broker: cluster unavailable")
	// ErrLost: the messages after the position asked for are no longer all
	// kept (they expired or were evicted, or the position is from another
	// epoch or ahead of the stream). The client must resynchronise.
	ErrLost = errors.New("broker: position lost")
	// ErrNoSession: no node has a session with that id.
	ErrNoSession = errors.New("broker: no such session")
	// ErrNotFound: no value is kept under that key (it was never put,
	// was taken already, or expired).
	ErrNotFound = errors.New("broker: not found")
)

// A Revocation refuses tokens cluster-wide: every token of Principal issued
// before At, or, with TokenID, only the token with that "jti".
type Revocation struct {
	Principal session.Principal
	TokenID   string    // a token's "jti"; "" for every token issued before At
	At        time.Time // when it was revoked
}

// A Message is one message of a user's stream.
type Message struct {
	Principal session.Principal
	protocol.Position
	Data json.RawMessage // one JSON value
}

// A Broker connects the nodes of a cluster. Join makes a Server a member.
type Broker interface {
	// Join makes node (a name unique in the cluster, made of letters,
	// digits, '-' and '_') a member; h receives what the other members send
	// to it. Before Join returns, h gets the revocations the broker still
	// keeps (its revocation window), so that a node that starts, or starts
	// again, refuses the tokens revoked before. A Broker may be joined by
	// several nodes of one process.
	Join(ctx context.Context, node string, h Handler) (Member, error)
}

// A Member is one node's connection to the cluster. Its methods are safe
// for concurrent use and honour ctx; none of them delivers anything to the
// node's own Handler: a node delivers to its own sessions itself.
type Member interface {
	// Publish appends data to p's stream and returns its position: the
	// stream's epoch and the next Seq, without gaps, in the order the
	// cluster accepted them. The members with interest in p get it
	// through Handler.Deliver.
	Publish(ctx context.Context, p session.Principal, data json.RawMessage) (protocol.Position, error)
	// Interest says whether this node has sessions of p, and so wants the
	// messages other members publish to p. It is a state per node and
	// user, not a count: the node counts its own sessions and calls it on
	// the first and after the last.
	Interest(ctx context.Context, p session.Principal, on bool) error
	// History returns the messages of p's stream after position after, in
	// order, and the stream's head (its epoch and last Seq; zero for a
	// stream without messages). With after.Epoch "" it returns the head
	// only. It fails with ErrLost when after is from another epoch, is
	// ahead of the head, or a message after it is no longer kept.
	History(ctx context.Context, p session.Principal, after protocol.Position) ([]Message, protocol.Position, error)
	// Broadcast sends data to every session of every other member.
	Broadcast(ctx context.Context, data json.RawMessage) error
	// Send sends data to the session with id sessionID on member node. It
	// fails with ErrNoSession when that node has no such session.
	Send(ctx context.Context, node, sessionID string, data json.RawMessage) error
	// Revoke tells every other member of r, now and, within the broker's
	// revocation window, when they join later: they refuse the tokens it
	// names and close the sessions that hold them. It returns once the
	// cluster has kept it.
	Revoke(ctx context.Context, r Revocation) error
	// PutOnce keeps value under key, for any member to take once, until
	// ttl passes (upgrade tickets). Keys are random and never reused.
	PutOnce(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// TakeOnce removes the value under key and returns it. Of members
	// taking one key at the same time, exactly one gets it; the others,
	// and every later call, get ErrNotFound, as for a key never put or
	// expired.
	TakeOnce(ctx context.Context, key string) ([]byte, error)
	// Leave ends the membership: Handler gets nothing more.
	Leave() error
}

// A Handler is a node's side of its membership: what other members send to
// it. The broker calls its methods from goroutines of its own; they must
// not block for long (a slow method delays the messages after it).
type Handler interface {
	// Deliver hands over a message another member published to a user the
	// node has interest in. Messages of one stream may come out of order
	// or twice (a broker reconnecting): the node orders them by Seq.
	Deliver(m Message)
	// Broadcast hands over another member's broadcast.
	Broadcast(data json.RawMessage)
	// Send hands over data for the node's session sessionID and reports
	// whether the node has it.
	Send(sessionID string, data json.RawMessage) bool
	// Revoke applies a revocation made on another member (or, from Join,
	// an earlier one on any member).
	Revoke(r Revocation)
}
