// Package registry finds a server's live sessions by id and by principal.
package registry

import (
	"hash/maphash"
	"sync"

	"github.com/wsauth/wsauth/session"
)

const registryShards = 32

// Registry finds live sessions by id and by principal. It is sharded by key so
// that registering and looking up sessions from many goroutines does not
// contend on one lock. The zero Registry is ready to use.
type Registry[T comparable] struct {
	seed maphash.Seed
	once sync.Once
	ids  [registryShards]idShard[T]
	subs [registryShards]subShard[T]
}

type idShard[T comparable] struct {
	mu sync.RWMutex
	m  map[string]T
}

type subShard[T comparable] struct {
	mu sync.RWMutex
	m  map[session.Principal]map[string]T // principal -> id -> session
}

func (r *Registry[T]) shard(key string) int {
	r.once.Do(func() { r.seed = maphash.MakeSeed() })
	return int(maphash.String(r.seed, key) % registryShards)
}

// Add registers v under id and principal. A second Add with the same id
// replaces the first.
func (r *Registry[T]) Add(id string, principal session.Principal, v T) {
	is := &r.ids[r.shard(id)]
	is.mu.Lock()
	if is.m == nil {
		is.m = make(map[string]T)
	}
	is.m[id] = v
	is.mu.Unlock()

	ss := &r.subs[r.shard(principal.Subject)]
	ss.mu.Lock()
	if ss.m == nil {
		ss.m = make(map[session.Principal]map[string]T)
	}
	set := ss.m[principal]
	if set == nil {
		set = make(map[string]T, 1)
		ss.m[principal] = set
	}
	set[id] = v
	ss.mu.Unlock()
}

// Remove unregisters id from the registry and from principal's set. It is
// a no-op for an id that is not registered.
func (r *Registry[T]) Remove(id string, principal session.Principal) {
	is := &r.ids[r.shard(id)]
	is.mu.Lock()
	delete(is.m, id)
	is.mu.Unlock()

	ss := &r.subs[r.shard(principal.Subject)]
	ss.mu.Lock()
	if set := ss.m[principal]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(ss.m, principal)
		}
	}
	ss.mu.Unlock()
}

// Get returns the session registered under id.
func (r *Registry[T]) Get(id string) (T, bool) {
	is := &r.ids[r.shard(id)]
	is.mu.RLock()
	v, ok := is.m[id]
	is.mu.RUnlock()
	return v, ok
}

// ByPrincipal appends every session of principal to dst and returns it.
func (r *Registry[T]) ByPrincipal(principal session.Principal, dst []T) []T {
	ss := &r.subs[r.shard(principal.Subject)]
	ss.mu.RLock()
	for _, v := range ss.m[principal] {
		dst = append(dst, v)
	}
	ss.mu.RUnlock()
	return dst
}

// All appends every registered session to dst and returns it.
func (r *Registry[T]) All(dst []T) []T {
	for i := range r.ids {
		is := &r.ids[i]
		is.mu.RLock()
		for _, v := range is.m {
			dst = append(dst, v)
		}
		is.mu.RUnlock()
	}
	return dst
}

// Len returns the number of registered sessions.
func (r *Registry[T]) Len() int {
	n := 0
	for i := range r.ids {
		is := &r.ids[i]
		is.mu.RLock()
		n += len(is.m)
		is.mu.RUnlock()
	}
	return n
}
