package client

// Written returns how many messages c has written since the last auth_ok
// (refused ones included), for tests that must know a message is on the
// wire.
func Written(c *Client) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent.size
}

// Buffered returns how many received messages, and bytes of data, wait
// for Receive.
func Buffered(c *Client) (n, bytes int) { return c.inbox.size() }

// Pongs returns how many pongs c has received.
func Pongs(c *Client) uint64 { return c.pongs.Load() }
