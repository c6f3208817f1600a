// Package client is the Go client of wsauth's wire protocol v1: it connects
// to a wsauth endpoint, authenticates with a token, stays authenticated by
// reauthenticating on the same socket, and stays connected by reconnecting
// with jittered exponential backoff after a retryable close.
//
// # Lifecycle
//
// Dial fetches a token from the TokenSource, opens the socket (offering the
// wsauth.v1 subprotocol), sends the auth frame (or presents the token on
// the upgrade: see below) and returns after auth_ok.
// From then on the client:
//
//   - answers reauth_required with a fresh token on the same socket, and
//     refreshes on its own Options.RefreshBefore before exp if the server
//     has not asked by then (the session id stays the same), leaving at
//     least a second between two auth frames on a socket; a server that
//     does not answer within Options.ReauthTimeout is taken for dead (the
//     client reconnects), and one whose auth_ok names another subject than
//     the socket's first ends the client;
//   - queues, bounded, what Send is given while it connects or
//     reauthenticates, and writes it in order after auth_ok; a message the
//     server refused with error 4401 (token expired, not processed) is sent
//     again after the next auth_ok;
//   - delivers the server's messages in order, to Options.OnMessage or
//     Receive; the messages the server buffered while the token was expired
//     come right after auth_ok, without gap or duplicate. A message over
//     Options.ReadLimit (1 MiB) ends the client with 1009; at most 64
//     messages and 1 MiB wait for Receive;
//   - on a server that keeps users' streams (a wsauth server with a
//     Broker), keeps its place in the user's stream and presents it in the
//     first auth frame of every reconnection, to any node of a cluster:
//     the messages sent to the user while it was away follow auth_ok, in
//     order, and none it received before comes again (not even those still
//     waiting for Receive). If the server no longer has them (resume
//     "lost"), Options.OnResumeLost tells the application to
//     resynchronise. Client.Position is the place as the application sees
//     it; saved and passed as Options.Resume, it resumes a new client, e.g.
//     after the process restarted;
//   - pings the server every Options.PingInterval (the server sends no
//     pings and has no idle timeout) and takes a connection on which
//     nothing arrives within Options.PongTimeout of a ping for dead;
//   - reconnects after the retryable close codes (1001, 1005, 1006, 1011, 1013,
//     4408, 4413, 4429, 4440), after a failed write and after its own
//     timeouts, with a fresh token, and ends on the terminal ones (1000,
//     1009, 4400, 4401, 4403): a token the server refuses (4401) is a fresh
//     one, since the client asks the source for every auth frame, so
//     retrying could only be refused again. The backoff between attempts
//     starts again only after a connection stayed authenticated for
//     Backoff.Max, so a server that closes right after auth_ok is retried
//     ever more slowly.
//
// The client ends on Close or a terminal error; Err says which, and
// errors.As(err, new(*protocol.CloseError)) gives the close code.
//
// # Credentials on the upgrade
//
// By default the token goes in the first auth frame of every connection.
// For a server that accepts it (docs/protocol.md, section 1.1), so that it
// refuses a bad token with plain HTTP before any socket exists, the token
// can go with the upgrade instead:
//
//   - Options.TokenInHeader: as "Authorization: Bearer <token>" on the
//     upgrade request (the server needs wsauth.Options.TokenInHeader);
//   - Options.TicketURL: before every connection the client exchanges a
//     fresh token for a single-use ticket at the server's ticket endpoint
//     (wsauth.Server.TicketHandler) and opens the socket with
//     ?ticket=<ticket> added to the URL.
//
// The session then starts authenticated (auth_ok is its first frame) and
// reauthenticates in auth frames on the socket, as every session does. A
// 401, from the upgrade or the exchange, is a refused token: it ends the
// client like a 4401 close, and errors.As finds a 4401 *protocol.CloseError
// in the *HandshakeError. The exchange's 408, 429 and 5xx answers and
// network errors are retried like a refused upgrade. Resuming the user's
// stream takes an auth frame, so a connection made while the client holds
// a position authenticates with one, whatever the options say: every
// reconnection to a server that keeps streams, and a first connection
// given Options.Resume. Neither tokens nor tickets are ever logged.
//
// A server that wants a token in every message
// (wsauth.Options.TokenPerMessage) needs Options.TokenPerMessage: each
// message then carries the token the server last accepted for the
// session, whichever way it was presented, and the token of every
// reauthentication from its auth_ok on. Without it, such a server refuses
// every message with error 4401 "token required", reported to OnError.
//
// # Goroutines
//
// A connected client runs two goroutines: its own, which owns every state
// change, token fetch, write, timer and reconnection, and the read
// goroutine of the current socket (gws's ReadLoop), which decodes frames
// and runs OnMessage, OnError and OnResumeLost, one at a time and in order.
// OnState runs on the client's goroutine, in order, possibly at the same
// time as OnMessage; it reports the changes after Dial returned, not Dial's
// own. A slow OnMessage, or an application that does not call Receive,
// stops reading (the server buffers, up to its limit); the connection's
// death is still noticed when a write to it fails (a message or a ping),
// and the client reconnects once the read goroutine is free: at once when
// it waits for room for Receive, when the callback returns otherwise
// (OnResumeLost also waits for Receive to take the messages received
// before the gap it reports). A slow OnState delays writes
// and reconnection. Close waits for both goroutines, so it must not be
// called from a callback. Timers (refresh, reauth timeout, keepalive,
// backoff) are Options.Clock AfterFuncs that only signal the client's
// goroutine. Besides these, only short-lived goroutines of the standard
// library and gws run (timer callbacks, the write of the upgrade request,
// the ticket exchange's HTTP connection); none outlives Close, or Dial
// when it fails.
//
// # Example
//
//	c, err := client.Dial(ctx, "wss://chat.example.com/ws", client.Options{
//		Token: client.TokenFunc(func(ctx context.Context) (string, error) {
//			return idp.AccessToken(ctx) // your OAuth client
//		}),
//		Header: http.Header{"Origin": {"https://chat.example.com"}},
//	})
//	if err != nil {
//		var ce *protocol.CloseError
//		if errors.As(err, &ce) && ce.Code == protocol.CloseUnauthorized {
//			// the token was refused (in an auth frame, or a 401 on the
//			// upgrade): log in again
//		}
//		return err
//	}
//	defer c.Close()
//	if err := c.Send(ctx, json.RawMessage(`{"text":"hello"}`)); err != nil {
//		return err
//	}
//	for {
//		data, err := c.Receive(ctx)
//		if err != nil {
//			return err // c.Err() after the client ended
//		}
//		handle(data)
//	}
package client
