package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/natsbroker"
)

// NATS connection settings: wait up to natsStartWait for NATS at start
// (nodes and NATS may start together), reconnect forever after (the demo
// outlives a NATS restart; meanwhile its own sessions go on), and notice a
// server that vanished without closing within PingInterval ×
// (MaxPingsOutstanding + 1).
const (
	natsStartWait      = 10 * time.Second
	natsConnectTimeout = 2 * time.Second // one attempt
	natsReconnectWait  = 250 * time.Millisecond
	natsPingInterval   = 10 * time.Second
	natsMaxPingsOut    = 2
	// natsJoinTimeout bounds natsbroker.New: creating or updating the
	// stream.
	natsJoinTimeout = 10 * time.Second
)

// newBroker returns the broker of cfg: natsbroker on a connection to
// cfg.natsURL, which makes the demos on that NATS one cluster; or, without
// it, a broker.Memory of this process (nil with -keep-for 0). release
// closes what newBroker opened: call it after the server has shut down
// (and so left the broker). where describes the broker for the logs.
func newBroker(ctx context.Context, cfg *config, logger *slog.Logger) (b broker.Broker, where string, release func(), err error) {
	if cfg.natsURL == "" {
		if cfg.keepFor == 0 {
			return nil, "none", func() {}, nil
		}
		return broker.NewMemory(broker.MemoryOptions{KeepFor: cfg.keepFor}), "memory", func() {}, nil
	}
	nc, err := nats.Connect(cfg.natsURL,
		nats.Name("wsauth-demo"),
		nats.Timeout(natsConnectTimeout),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(natsReconnectWait),
		nats.PingInterval(natsPingInterval),
		nats.MaxPingsOutstanding(natsMaxPingsOut),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			logger.Warn("NATS connection lost: this node's sessions go on; messages to other nodes fail until it is back", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("NATS connection back", "nats", nc.ConnectedUrlRedacted())
		}),
		nats.NoCallbacksAfterClientClose(),
	)
	if err != nil {
		return nil, "", nil, fmt.Errorf("-nats: %w", err)
	}
	if err := awaitConnected(ctx, nc); err != nil {
		nc.Close()
		return nil, "", nil, err
	}
	jctx, cancel := context.WithTimeout(ctx, natsJoinTimeout)
	defer cancel()
	nb, err := natsbroker.New(jctx, nc, natsbroker.Options{KeepFor: cfg.keepFor})
	if err != nil {
		nc.Close()
		return nil, "", nil, fmt.Errorf("-nats: %w", err)
	}
	return nb, "nats " + nc.ConnectedUrlRedacted(), nc.Close, nil
}

// awaitConnected waits until nc, which retries its first connection in
// the background, has connected, for up to natsStartWait.
func awaitConnected(ctx context.Context, nc *nats.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, natsStartWait)
	defer cancel()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("-nats: no NATS server reachable within %v: %w", natsStartWait, ctx.Err())
		case <-poll.C:
		}
	}
	return nil
}
