//go:build !linux

package client_test

import "syscall"

// smallSegments leaves the proxy's listener as it is elsewhere than on
// Linux (see newProxy): tests that fill a frozen connection take longer.
var smallSegments func(network, address string, rc syscall.RawConn) error
