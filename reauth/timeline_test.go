package reauth_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/wsauth/wsauth/reauth"
)

func TestPlan(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name       string
		ttl        time.Duration
		lead       time.Duration
		grace      time.Duration
		wantAskIn  time.Duration // Ask - t0
		wantCloses time.Duration // Deadline - t0
	}{
		{"long token: the whole lead", time.Hour, 30 * time.Second, 10 * time.Second, time.Hour - 30*time.Second, time.Hour + 10*time.Second},
		{"short token: lead capped at half its life", 20 * time.Second, 30 * time.Second, 10 * time.Second, 10 * time.Second, 30 * time.Second},
		{"lead exactly half", time.Minute, 30 * time.Second, 0, 30 * time.Second, time.Minute},
		{"expired token: ask at expiry", -time.Second, 30 * time.Second, 10 * time.Second, -time.Second, 9 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tl := reauth.Plan(t0, t0.Add(c.ttl), c.lead, c.grace)
			assert.Equal(t, c.wantAskIn, tl.Ask.Sub(t0), "Ask")
			assert.Equal(t, t0.Add(c.ttl), tl.Expiry, "Expiry")
			assert.Equal(t, c.wantCloses, tl.Deadline.Sub(t0), "Deadline")
			assert.False(t, tl.Ask.After(tl.Expiry), "Ask after Expiry")
		})
	}
}

// A 5-minute token on a server with the default lead (30 s) and grace (10 s).
func ExamplePlan() {
	accepted := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	tl := reauth.Plan(accepted, accepted.Add(5*time.Minute), 30*time.Second, 10*time.Second)
	fmt.Println("reauth_required at", tl.Ask.Format(time.TimeOnly))
	fmt.Println("expired at        ", tl.Expiry.Format(time.TimeOnly))
	fmt.Println("closed 4440 at    ", tl.Deadline.Format(time.TimeOnly))
	// Output:
	// reauth_required at 12:04:30
	// expired at         12:05:00
	// closed 4440 at     12:05:10
}
