package registry_test

import (
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wsauth/wsauth/internal/registry"
	"github.com/wsauth/wsauth/session"
)

func TestRegistry(t *testing.T) {
	t.Parallel()
	var r registry.Registry[string]
	alice := session.Principal{Issuer: "https://a.example/", Subject: "alice"}
	// Another issuer's alice is another person.
	otherAlice := session.Principal{Issuer: "https://b.example/", Subject: "alice"}
	bob := session.Principal{Issuer: "https://a.example/", Subject: "bob"}
	r.Add("1", alice, "s1")
	r.Add("2", alice, "s2")
	r.Add("3", bob, "s3")
	r.Add("4", otherAlice, "s4")
	v, ok := r.Get("2")
	assert.True(t, ok)
	assert.Equal(t, "s2", v)
	got := r.ByPrincipal(alice, nil)
	sort.Strings(got)
	assert.Equal(t, []string{"s1", "s2"}, got)
	assert.Equal(t, []string{"s4"}, r.ByPrincipal(otherAlice, nil))
	assert.Empty(t, r.ByPrincipal(session.Principal{Subject: "alice"}, nil))
	assert.Equal(t, 4, r.Len())
	r.Remove("1", alice)
	r.Remove("1", alice) // idempotent
	assert.Equal(t, []string{"s2"}, r.ByPrincipal(alice, nil))
	r.Remove("2", alice)
	r.Remove("4", otherAlice)
	assert.Empty(t, r.ByPrincipal(alice, nil))
	all := r.All(nil)
	assert.Equal(t, []string{"s3"}, all)
	_, ok = r.Get("1")
	assert.False(t, ok)
}

func TestRegistryConcurrent(t *testing.T) {
	t.Parallel()
	var r registry.Registry[int]
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				id := fmt.Sprintf("%d-%d", g, i)
				p := session.Principal{Issuer: "iss", Subject: fmt.Sprint(i % 7)}
				r.Add(id, p, i)
				_ = r.ByPrincipal(p, nil)
				if i%2 == 0 {
					r.Remove(id, p)
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 8*250, r.Len())
}
