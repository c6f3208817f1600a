package natsbroker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/wsauth/wsauth/broker/brokertest"
	"github.com/wsauth/wsauth/natsbroker"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

func Example() {
	url, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	// The application dials NATS as it wants, and owns the connection.
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	b, err := natsbroker.New(ctx, nc, natsbroker.Options{KeepFor: 5 * time.Minute})
	if err != nil {
		panic(err)
	}
	m, err := b.Join(ctx, "node-1", &brokertest.Recorder{})
	if err != nil {
		panic(err)
	}
	defer m.Leave()

	alice := session.Principal{Issuer: "https://idp.example/", Subject: "alice"}
	for _, msg := range []string{`"hello"`, `"world"`} {
		pos, err := m.Publish(ctx, alice, json.RawMessage(msg))
		if err != nil {
			panic(err)
		}
		fmt.Println("published Seq", pos.Seq)
	}
	// A client that saw Seq 1 resumes on any node.
	_, head, _ := m.History(ctx, alice, protocol.Position{})
	msgs, _, err := m.History(ctx, alice, protocol.Position{Epoch: head.Epoch, Seq: 1})
	if err != nil {
		panic(err)
	}
	for _, msg := range msgs {
		fmt.Println("missed Seq", msg.Seq, string(msg.Data))
	}
	// Output:
	// published Seq 1
	// published Seq 2
	// missed Seq 2 "world"
}

// exampleServer starts a NATS server with JetStream in the process.
func exampleServer() (url string, stop func()) {
	dir, err := os.MkdirTemp("", "natsbroker-example")
	if err != nil {
		panic(err)
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		panic(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		panic("nats-server not ready")
	}
	return ns.ClientURL(), func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		_ = os.RemoveAll(dir)
	}
}
