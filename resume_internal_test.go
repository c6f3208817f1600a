package wsauth

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/outbox"
)

type refuseAll struct{}

func (refuseAll) Verify(context.Context, string) (Identity, error) {
	return Identity{}, errors.New("no")
}

// TestResumeKeepsNothingAfterShutdown: what a session leaves once
// Shutdown has handed the resume store over goes to OnUndelivered at once.
// A session finishing while Shutdown gives up on its context can pass
// undelivered's shutting-down check just before Shutdown flushes the
// store; the store used to keep its messages after the flush, in a store
// nobody flushes again and on a stopped scheduler that never expires
// them: lost without OnUndelivered ever hearing of them.
func TestResumeKeepsNothingAfterShutdown(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	srv, err := New(Options{Verifier: refuseAll{}, ResumeFor: time.Minute,
		OnUndelivered: func(_ Principal, data []json.RawMessage) {
			mu.Lock()
			defer mu.Unlock()
			for _, d := range data {
				got = append(got, string(d))
			}
		}})
	require.NoError(t, err)
	p := Principal{Issuer: "https://idp.example/", Subject: "late"}
	it, err := srv.newItem(json.RawMessage(`"before"`))
	require.NoError(t, err)
	srv.resume.put(p, []outbox.Item{it})
	require.NoError(t, srv.Shutdown(context.Background()))
	it, err = srv.newItem(json.RawMessage(`"after"`))
	require.NoError(t, err)
	srv.resume.put(p, []outbox.Item{it}) // as finish does, having seen the server open
	mu.Lock()
	assert.Equal(t, []string{`"before"`, `"after"`}, got)
	mu.Unlock()
	assert.Equal(t, Holdings{}, HoldingsOf(srv))
}
