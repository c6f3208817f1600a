package client

// Written returns how many messages c has written since the last auth_ok
// (refused ones included), for tests that must know a message is on the
// wire.
func Written(c *Client) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent.size
}
