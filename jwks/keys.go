package jwks

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/MicahParks/jwkset"
)

var (
	// errNoUsableKeys fails a fetch whose JWK Set holds no usable key (see
	// usable). jwkset skips the keys it does not support (an empty object,
	// an unknown kty or curve) and would replace the held keys with the
	// rest, an empty set: every token would then be refused until a later
	// good fetch, as for the empty answers capTransport refuses.
	errNoUsableKeys = errors.New("jwks: JWK Set has no usable key (an RSA, EC or Ed25519 public key for signatures)")
	// errUnusableKey refuses to write a key that usable rejects.
	errUnusableKey = errors.New("jwks: key is not usable to verify signatures")
)

// keyStore is the storage jwkset fetches one issuer's JWK Set into:
// jwkset's memory storage, plus an index of the keys by kid. Verify reads
// the index without a lock, a copy of the set or a conversion of every key
// (jwkset.MemoryJWKSet.KeyRead copies each key's JWKMarshal until it finds
// the kid), and a miss in it never fetches anything: only a read of the
// HTTP client storage around it (issuer.storage) refetches the set, and
// Verify makes one for an unknown kid only when the issuer's rate limit
// allows (Verifier.startRefetch).
//
// The store holds only usable keys (see usable): a key published for
// encryption never verifies a signature, whether Verify finds it in the
// index or an unknown-kid refetch reads it from the storage. jwkset
// replaces the whole set on every fetch it could decode (KeyReplaceAll);
// the index is rebuilt then. A fetched set without any usable key is
// refused there: jwkset then fails the fetch (and reports it to the
// RefreshErrorHandler, which logs it), keeping the keys held.
type keyStore struct {
	*jwkset.MemoryJWKSet
	mu  sync.Mutex // serializes changes, so that the index follows the set
	idx atomic.Pointer[keyIndex]

	fetches fetchStatus // for Verifier.Status and Health
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
	key any    // the public key, as keyfunc would return it
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

// KeyReplaceAll replaces the set with the usable keys of given, or fails
// with errNoUsableKeys, changing nothing, if there is none.
func (s *keyStore) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	keys := make([]jwkset.JWK, 0, len(given))
	for _, jwk := range given {
		if usable(jwk) {
			keys = append(keys, jwk)
		}
	}
	if len(keys) == 0 {
		return errNoUsableKeys
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.MemoryJWKSet.KeyReplaceAll(ctx, keys); err != nil {
		return err
	}
	s.reindex(ctx)
	// jwkset calls KeyReplaceAll only with a set it fetched and decoded.
	s.fetches.succeeded()
	return nil
}

// KeyWrite adds jwk to the set, or fails with errUnusableKey.
func (s *keyStore) KeyWrite(ctx context.Context, jwk jwkset.JWK) error {
	if !usable(jwk) {
		return errUnusableKey
	}
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

// usable tells whether jwk may verify a token's signature: an RSA, EC or
// Ed25519 key (a JWK Set may also decode to a shared secret, "oct", or an
// X25519 key agreement key, which no allowed algorithm uses), whose "use",
// if present, is "sig" and whose "key_ops", if present, include "verify"
// (RFC 7517 sections 4.2 and 4.3).
func usable(jwk jwkset.JWK) bool {
	m := jwk.Marshal()
	if m.USE != "" && m.USE != jwkset.UseSig {
		return false
	}
	// jwkset keeps an absent key_ops nil and a present one, even [], not.
	if m.KEYOPS != nil && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return false
	}
	switch publicOf(jwk.Key()).(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return true
	}
	return false
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
