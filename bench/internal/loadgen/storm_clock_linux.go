//go:build linux

package loadgen

import (
	"syscall"
	"unsafe"
)

// StormNow returns the clock a reauth storm's timings use, in nanoseconds:
// CLOCK_MONOTONIC, one clock for every process on the machine (unlike the
// monotonic reading of time.Now, which counts from the process's start), so
// that the benchmark can subtract its own reading from the child's.
func StormNow() int64 {
	var ts syscall.Timespec
	_, _, errno := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		panic("loadgen: clock_gettime(CLOCK_MONOTONIC): " + errno.Error())
	}
	return ts.Nano()
}
