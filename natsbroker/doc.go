// Package natsbroker is a broker.Broker on NATS: the wsauth Servers of a
// cluster share users' streams through JetStream and their signals through
// core NATS. It is the only wsauth package that imports NATS.
//
// The application owns the connection: it dials NATS with its own URLs,
// credentials and reconnection settings (nats.go's defaults reconnect
// forever; MaxReconnects(-1) says so explicitly), hands it to New, and
// closes it after every member has left. New creates or updates the
// stream; every node of the cluster calls New with the same Options.
//
// # Streams
//
// All users' messages live in one JetStream stream (file storage), named
// Options.Stream ("WSAUTH"), one subject per user: WSAUTH.u.<key>, where
// key is 32 hex digits of a SHA-256 of the principal (its issuer's length,
// issuer, subject), since a principal may hold any byte and a subject may
// not. The principal itself is in each message's headers and is checked on
// every read, so even a collision of keys could not hand one user's
// message to another.
//
// JetStream numbers a stream's messages across all subjects, so the
// per-user Seq is the broker's own, in the Wsauth-Seq and Wsauth-Epoch
// headers. Publish takes it with a compare-and-set: it publishes Seq n+1
// with Nats-Expected-Last-Subject-Sequence set to the stream sequence of
// the user's message n, and JetStream refuses it if another publisher got
// there first; then Publish reads the user's last message again and
// retries (up to 256 times, within Options.Timeout and ctx). A process
// remembers the last message it published to each user (up to 16,384
// users), so an uncontested Publish is one round trip; one process
// publishes to one user one message at a time. A user without any message
// starts a new random epoch at Seq 1.
//
// Nothing expires by age: expiring a quiet user's last message would
// restart the user's numbering. What is kept is bounded per user by
// Options.MaxMessages (JetStream's MaxMsgsPerSubject) and in all by
// Options.MaxBytes (the oldest messages go first), and Options.KeepFor
// applies when reading: History treats older messages as gone. A user
// whose every message was evicted by MaxBytes starts again at Seq 1 in a
// new epoch, and resumes from the old epoch are told ErrLost.
//
// History reads the head from the stream's leader, then walks back from it
// message by message when the resume is up to 16 messages behind (each
// message points to the one before), or else reads the user's messages
// stored within KeepFor in one batched direct get: the cost of a long
// resume grows with the user's messages within KeepFor, at most
// MaxMessages.
//
// # Live delivery and signals
//
// Once JetStream has acknowledged a message, Publish announces it on core
// NATS (WSAUTH.live.<key>), so that no message that lost a compare-and-set
// is ever seen. Interest(p, true) subscribes the node to p's subject,
// Interest(p, false) ends that; it is a state per node and principal, not
// a count (as in broker.Memory): the node counts its sessions. Interest
// returns once the NATS server has the subscription, so a message
// published after it reaches the node (in a NATS cluster, after the
// subscription has crossed the routes too). Live delivery is at most once:
// a node that misses a message sees the gap in Seq.
//
// Broadcast goes to WSAUTH.all and returns once the server has it. Send is
// a request to WSAUTH.node.<node>.send, answered by that node's Handler:
// ErrNoSession when the node answers no, when no node of that name is
// subscribed (no responders: it left, or never was) and for the node
// itself; ErrUnavailable when the node does not answer within
// Options.Timeout (it may have delivered). Revoke is stored in the stream
// (WSAUTH.revoke.<key>, the last MaxMessages per user) and returns once
// JetStream has acknowledged it; the members subscribed get it at once.
// None of them reaches the member that sent it.
//
// # Faults
//
// While the connection is down (nats.go reconnecting), Publish, History,
// Broadcast, Send and Revoke fail at once with an error wrapping
// broker.ErrUnavailable, and so do the requests in flight when it goes
// down; Interest and Join still succeed (nats.go subscribes again when it
// reconnects). Once the connection is back, each member catches up: it
// hands its Handler the revocations and the messages of the users it has
// interest in stored since it went down (less 2 seconds, for messages in
// flight and clock differences), some perhaps twice, as the contract
// allows. A Publish whose acknowledgement was lost reports ErrUnavailable
// though its message may be stored: a resume will find it.
//
// Broker.Health, and the Health method of each member (a
// wsauth.HealthChecker), report the connection: a wsauth.Server's
// readiness probe is 503 while it is down (docs/operations.md).
//
// # Goroutines
//
// nats.go calls each subscription's handler on a goroutine of its own:
// one per user with interest (so a Handler slow with one user's messages
// delays only that user's), one for broadcasts, one for revocations, one
// for Send. Each member has one more goroutine, which follows the
// connection's state and catches up after a disconnection. Leave waits
// for the Handler methods running: a Handler must not call Leave.
//
// # Example
//
//	nc, err := nats.Connect("nats://nats.internal:4222", nats.MaxReconnects(-1))
//	...
//	defer nc.Close()
//	b, err := natsbroker.New(ctx, nc, natsbroker.Options{KeepFor: 5 * time.Minute})
//	...
//	m, err := b.Join(ctx, "node-1", handler) // a broker.Handler
//	...
//	defer m.Leave()
//	pos, err := m.Publish(ctx, principal, json.RawMessage(`{"hello":"world"}`))
package natsbroker
