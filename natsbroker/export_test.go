package natsbroker

import "github.com/wsauth/wsauth/broker"

// Conflicts returns how many compare-and-set rounds b's publishes lost.
func Conflicts(b *Broker) uint64 { return b.conflicts.Load() }

// Node returns the name of m's node.
func Node(m broker.Member) string { return m.(*member).node }
