package jwks

import (
	"context"
	"crypto"
	"sync"
	"sync/atomic"

	"github.com/MicahParks/jwkset"
)

// keyStore is the storage jwkset fetches one issuer's JWK Set into:
// jwkset's memory storage, plus an index of the keys by kid. Verify reads
// the index without a lock, a copy of the set or a conversion of every key
// (jwkset.MemoryJWKSet.KeyRead copies each key's JWKMarshal until it finds
// the kid), and a miss in it never fetches anything: only the storage
// keyfunc reads refetches the set, and Verify calls it for an unknown kid
// only when the issuer's rate limit allows.
//
// jwkset replaces the whole set on every successful fetch (KeyReplaceAll);
// the index is rebuilt then.
type keyStore struct {
	*jwkset.MemoryJWKSet
	mu  sync.Mutex // serializes changes, so that the index follows the set
	idx atomic.Pointer[keyIndex]
}

// keyIndex is a snapshot of a key set. It is never modified once stored.
type keyIndex struct {
	byKID map[string]*publicKey
	n     int // keys in the set, with or without kid
}

// publicKey is one key of a set. A refetch that publishes the same key
// under the same kid, with the same "alg", keeps the same *publicKey: the
// pointer identifies "this key, still published under this kid", which is
// what a cached verification depends on.
type publicKey struct {
	alg string // the JWK's "alg", "" if it has none
	key any    // what keyfunc would return for it
}

func newKeyStore() *keyStore {
	s := &keyStore{MemoryJWKSet: jwkset.NewMemoryStorage()}
	s.idx.Store(&keyIndex{})
	return s
}

// lookup returns the key published under kid, or nil.
func (s *keyStore) lookup(kid string) *publicKey {
	return s.idx.Load().byKID[kid]
}

// empty tells whether the set holds no key at all.
func (s *keyStore) empty() bool {
	return s.idx.Load().n == 0
}

func (s *keyStore) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.MemoryJWKSet.KeyReplaceAll(ctx, given); err != nil {
		return err
	}
	s.reindex(ctx)
	return nil
}

func (s *keyStore) KeyWrite(ctx context.Context, jwk jwkset.JWK) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.MemoryJWKSet.KeyWrite(ctx, jwk); err != nil {
		return err
	}
	s.reindex(ctx)
	return nil
}

func (s *keyStore) KeyDelete(ctx context.Context, keyID string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok, err := s.MemoryJWKSet.KeyDelete(ctx, keyID)
	if err != nil {
		return ok, err
	}
	s.reindex(ctx)
	return ok, nil
}

// reindex rebuilds the index from the set. The caller holds s.mu.
func (s *keyStore) reindex(ctx context.Context) {
	keys, _ := s.MemoryJWKSet.KeyReadAll(ctx) // memory: cannot fail
	old := s.idx.Load().byKID
	idx := &keyIndex{byKID: make(map[string]*publicKey, len(keys)), n: len(keys)}
	for _, jwk := range keys {
		m := jwk.Marshal()
		if _, dup := idx.byKID[m.KID]; dup {
			continue // jwkset's KeyRead returns the first one too
		}
		pk := &publicKey{alg: m.ALG.String(), key: publicOf(jwk.Key())}
		if prev := old[m.KID]; prev != nil && prev.alg == pk.alg && sameKey(prev.key, pk.key) {
			pk = prev
		}
		idx.byKID[m.KID] = pk
	}
	s.idx.Store(idx)
}

// publicOf returns the public half of key, as keyfunc does: a JWK Set may
// hold private keys, which jwkset decodes as such.
func publicOf(key any) any {
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		return pk.Public()
	}
	return key
}

// sameKey reports whether a and b are the same public key. Keys of a type
// without an Equal method (symmetric keys, which no allowed algorithm
// uses) never are.
func sameKey(a, b any) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
