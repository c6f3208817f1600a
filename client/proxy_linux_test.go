package client_test

import "syscall"

// proxySegment is the largest TCP segment that the proxy's listener
// announces to clients (loopback's own is 65483 bytes).
const proxySegment = 1024

// smallSegments is the Control function of the proxy's listener: it sets
// TCP_MAXSEG on the listening socket, which Linux announces as the MSS of
// the connections the listener accepts; a client's kernel sizes the send
// buffer of its connection by that MSS (see newProxy).
func smallSegments(_, _ string, rc syscall.RawConn) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, proxySegment)
	}); cerr != nil {
		return cerr
	}
	return err
}
