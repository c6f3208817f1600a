package deadline_test

import (
	"fmt"
	"time"

	"github.com/wsauth/wsauth/internal/deadline"
	"github.com/wsauth/wsauth/wsauthtest"
)

// A session embeds its Entry, so scheduling its deadline allocates nothing.
// Reauthentication moves the deadline; the session's end cancels it.
func Example() {
	start := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := wsauthtest.NewClock(start)
	s := deadline.New(clock)
	defer s.Stop()

	type session struct {
		id     string
		expiry deadline.Entry
	}
	alice := &session{id: "alice"}
	bob := &session{id: "bob"}
	expire := func(sess *session) func() {
		return func() {
			fmt.Printf("%s: %s expired\n", clock.Now().Sub(start), sess.id)
		}
	}

	s.Schedule(&alice.expiry, start.Add(5*time.Minute), expire(alice))
	s.Schedule(&bob.expiry, start.Add(10*time.Minute), expire(bob))

	clock.Advance(4 * time.Minute)
	// Alice reauthenticates with a token valid for another 15 minutes.
	s.Schedule(&alice.expiry, clock.Now().Add(15*time.Minute), expire(alice))

	clock.Advance(10 * time.Minute)
	fmt.Println("pending:", s.Len())
	// Alice disconnects before her new token expires.
	fmt.Println("cancelled:", s.Cancel(&alice.expiry))
	clock.Advance(time.Hour)
	fmt.Println("pending:", s.Len())
	// Output:
	// 10m0s: bob expired
	// pending: 1
	// cancelled: true
	// pending: 0
}
