package jwks

import (
	"crypto/sha256"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsauth/wsauth/session"
)

// tokenKey identifies a token in the cache: the SHA-256 of its bytes. The
// token itself is never stored.
type tokenKey [sha256.Size]byte

// cached is one verified token.
type cached struct {
	sum tokenKey
	is  *issuer
	kid string
	key *publicKey // the key that verified it, as published under kid then

	// The token is valid at t when notBefore <= t < expires (leeway
	// included, as jwt applies it).
	expires   time.Time
	notBefore time.Time
	hasNBF    bool

	id session.Identity // private: callers get deep copies

	slot int         // index in tokenCache.slots
	used atomic.Bool // hit since the clock hand last passed
}

// tokenCache is a bounded map of verified tokens with CLOCK (second
// chance) eviction: when full, an insertion takes the first slot at or
// after the hand that is free, holds an expired token, or has not been hit
// since the hand last passed it.
type tokenCache struct {
	max int

	mu      sync.RWMutex
	entries map[tokenKey]*cached
	slots   []*cached // grows up to max; nil: free
	hand    int
}

func newTokenCache(size int) *tokenCache {
	return &tokenCache{max: size, entries: make(map[tokenKey]*cached)}
}

func (c *tokenCache) get(k tokenKey) *cached {
	c.mu.RLock()
	e := c.entries[k]
	c.mu.RUnlock()
	if e != nil && !e.used.Load() {
		e.used.Store(true)
	}
	return e
}

// remove drops the entry for k if it is still e.
func (c *tokenCache) remove(k tokenKey, e *cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[k] == e {
		delete(c.entries, k)
		c.slots[e.slot] = nil
	}
}

// put stores e under e.sum, replacing any entry for it, evicting one if the
// cache is full. now tells expired entries.
func (c *tokenCache) put(e *cached, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		return // cleared by Close
	}
	if old := c.entries[e.sum]; old != nil {
		e.slot = old.slot
	} else if len(c.slots) < c.max {
		e.slot = len(c.slots)
		c.slots = append(c.slots, nil)
	} else {
		e.slot = c.victim(now)
		if v := c.slots[e.slot]; v != nil {
			delete(c.entries, v.sum)
		}
	}
	c.slots[e.slot] = e
	c.entries[e.sum] = e
}

// victim advances the hand to the slot to reuse. It stops within two
// turns: the first clears every used flag it passes.
func (c *tokenCache) victim(now time.Time) int {
	for {
		i := c.hand
		c.hand = (c.hand + 1) % len(c.slots)
		e := c.slots[i]
		if e == nil || !now.Before(e.expires) || !e.used.Swap(false) {
			return i
		}
	}
}

// len returns the number of entries.
func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// clear drops every entry and refuses new ones.
func (c *tokenCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries, c.slots = nil, nil
}

// copyIdentity returns a copy of id that shares no mutable memory with it.
func copyIdentity(id session.Identity) session.Identity {
	id.Audience = slices.Clone(id.Audience)
	id.Claims = copyJSON(id.Claims).(map[string]any)
	return id
}

// copyJSON deep-copies a value decoded by encoding/json into an any:
// maps and slices are copied, the other values (strings, numbers, bools,
// nil) are immutable.
func copyJSON(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if v == nil {
			return v
		}
		m := maps.Clone(v)
		for k, x := range m {
			switch x.(type) {
			case map[string]any, []any:
				m[k] = copyJSON(x)
			}
		}
		return m
	case []any:
		s := slices.Clone(v)
		for i, x := range s {
			s[i] = copyJSON(x)
		}
		return s
	default:
		return v
	}
}
