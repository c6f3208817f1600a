// Package broker connects the wsauth Servers of a cluster and keeps each
// user's recent messages, so that a client can resume where it left off,
// on any node, after any disconnect.
//
// Every user (a session.Principal) has a stream: the messages the
// application sends to that user (Server.SendToPrincipals), numbered 1, 2,
// 3... without gaps within an epoch. A Member publishes to streams, keeps
// their recent history for resume, tells the other members of the cluster
// about messages to the users they have sessions of (interest), and carries
// the cluster-wide signals: broadcasts, messages to one session on another
// node, revocations.
//
// Memory is the broker of a single process: the default for resume on one
// node, and an in-process cluster for tests. Package natsbroker is the
// broker of a real cluster, on NATS JetStream. Package brokertest checks
// that a Broker keeps the contract.
//
// # Goroutines
//
// A Member's methods are safe for concurrent use. A Handler's methods are
// called on goroutines of the broker's.
//
// # Example
//
//	b := broker.NewMemory(broker.MemoryOptions{KeepFor: 2 * time.Minute})
//	srv, err := wsauth.New(wsauth.Options{Verifier: v, Broker: b})
package broker
