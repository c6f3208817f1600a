package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/centrifugal/centrifuge"
	"github.com/golang-jwt/jwt/v5"

	"github.com/wsauth/wsauth/wsauthtest"
)

// The Centrifuge baseline: github.com/centrifugal/centrifuge, a real-time
// messaging library with its own WebSocket transport and JSON protocol,
// configured for the same job as the wsauth target: a client connects with
// a JWT of the same identity provider (same key, same claims), verified on
// every connect with golang-jwt, and calls an "echo" RPC that returns its
// data. Centrifuge queues every reply for a writer goroutine per
// connection, which writes up to 16 queued replies in one frame.

// StartCentrifuge starts the Centrifuge baseline and its identity provider
// (algorithm as for StartWsauth: "RS256" by default, or "ES256") on one
// loopback listener.
func StartCentrifuge(alg string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	base := "http://" + ln.Addr().String()
	idp, err := wsauthtest.NewDevIdP(base, wsauthtest.IdPOptions{Audience: Audience, Algorithm: alg})
	if err != nil {
		ln.Close()
		return nil, err
	}
	if alg == "" {
		alg = "RS256"
	}
	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelNone})
	if err != nil {
		ln.Close()
		return nil, err
	}
	// What a Centrifuge application (or Centrifugo) does with a connection
	// token: verify the signature with the provider's key, check iss, aud
	// and exp, and take the user from sub.
	pub := idp.PublicKey()
	parser := jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithIssuer(idp.Issuer()),
		jwt.WithAudience(Audience), jwt.WithExpirationRequired())
	keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
	verify := func(token string) (sub string, exp int64, err error) {
		var claims jwt.RegisteredClaims
		if _, err := parser.ParseWithClaims(token, &claims, keyfunc); err != nil {
			return "", 0, err
		}
		if claims.Subject == "" {
			return "", 0, errors.New("no sub")
		}
		return claims.Subject, claims.ExpiresAt.Unix(), nil
	}
	node.OnConnecting(func(_ context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		sub, exp, err := verify(e.Token)
		if err != nil {
			return centrifuge.ConnectReply{}, centrifuge.DisconnectInvalidToken
		}
		return centrifuge.ConnectReply{
			Credentials:       &centrifuge.Credentials{UserID: sub, ExpireAt: exp},
			ClientSideRefresh: true,
		}, nil
	})
	node.OnConnect(func(c *centrifuge.Client) {
		c.OnRPC(func(e centrifuge.RPCEvent, cb centrifuge.RPCCallback) {
			cb(centrifuge.RPCReply{Data: e.Data}, nil)
		})
		c.OnRefresh(func(e centrifuge.RefreshEvent, cb centrifuge.RefreshCallback) {
			_, exp, err := verify(e.Token)
			if err != nil {
				cb(centrifuge.RefreshReply{Expired: true}, nil)
				return
			}
			cb(centrifuge.RefreshReply{ExpireAt: exp}, nil)
		})
	})
	if err := node.Run(); err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{Kind: "centrifuge", URL: "ws" + base[len("http"):] + "/ws", IdP: idp, cf: node}
	s.tokens = newTokenCache(func(_ context.Context, sub string) (string, error) {
		return idp.Token(sub, 24*time.Hour), nil
	})
	mux := http.NewServeMux()
	// The WebSocket handler's own defaults, except the origin check: the
	// load generator sends no Origin, which Centrifuge allows anyway.
	mux.Handle("/ws", centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
		MessageSizeLimit: 1 << 20, // wsauth's frame cap, as for the gws baseline
	}))
	s.start(ln, mux)
	return s, nil
}

// centrifugeShutdown stops the node: it closes every client.
func centrifugeShutdown(ctx context.Context, node *centrifuge.Node) error {
	if err := node.Shutdown(ctx); err != nil {
		return fmt.Errorf("loadgen: centrifuge shutdown: %w", err)
	}
	return nil
}

// Centrifuge's JSON protocol as the client writes it: one command per
// frame ({"id":N,"connect":{…}} or {"id":N,"rpc":{…}}); the server answers
// with replies carrying the same id, several to a frame, one per line. An
// empty object is the server's ping, answered by an empty object.

// centrifugeIDs numbers the commands of one connection; id 1 is connect.
type centrifugeIDs struct {
	mu   sync.Mutex
	next uint32
}

func (c *centrifugeIDs) id() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	return c.next + 1
}

func appendCentrifugeConnect(dst []byte, token string) []byte {
	dst = append(dst, `{"id":1,"connect":{"token":"`...)
	dst = append(dst, token...) // a JWT needs no escaping
	return append(dst, `"}}`...)
}

// appendCentrifugeRPC appends an echo RPC whose data is the same marked
// JSON string a wsauth client sends in a frame of size bytes: Centrifuge
// carries the same application data, in its own envelope.
func appendCentrifugeRPC(dst []byte, id uint32, ts int64, idx, size int) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendUint(dst, uint64(id))
	dst = append(dst, `,"rpc":{"method":"echo","data":`...)
	dst = appendPushData(dst, ts, idx, size)
	return append(dst, `}}`...)
}

func appendUint(dst []byte, v uint64) []byte {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}
