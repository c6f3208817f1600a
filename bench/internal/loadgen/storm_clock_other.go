//go:build !linux

package loadgen

import "time"

// StormNow returns the clock a reauth storm's timings use, in nanoseconds:
// here the wall clock, the one clock every process on the machine shares
// (the monotonic reading of time.Now counts from the process's start).
// StormReport.Since catches most steps of the wall clock during a round.
func StormNow() int64 { return time.Now().UnixNano() }
