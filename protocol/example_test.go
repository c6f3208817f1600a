package protocol_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/wsauth/wsauth/protocol"
)

func ExampleDecodeClient() {
	f, err := protocol.DecodeClient([]byte(`{"type":"message","id":"m1","data":{"text":"hi"}}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(f.Type, f.ID, string(f.Data))

	// Malformed frames are refused with a fixed text that never shows the input.
	_, err = protocol.DecodeClient([]byte(`{"type":"auth","token":"secret","token":"other"}`))
	fmt.Println(errors.Is(err, protocol.ErrMalformed), err)
	// Output:
	// message m1 {"text":"hi"}
	// true protocol: malformed frame: duplicate key
}

func ExampleAppendServer() {
	data := json.RawMessage(`{"text":"hi"}`)
	if !protocol.ValidData(data) {
		return
	}
	buf := make([]byte, 0, 64) // reused for every frame: no allocation per message
	buf = protocol.AppendServer(buf[:0], protocol.ServerFrame{Type: protocol.TypeMessage, Data: data})
	fmt.Println(string(buf))
	buf = protocol.AppendServer(buf[:0], protocol.ServerFrame{Type: protocol.TypeError, Code: 4429, Message: "slow down", Ref: "m1"})
	fmt.Println(string(buf))
	// Output:
	// {"type":"message","data":{"text":"hi"}}
	// {"type":"error","code":4429,"message":"slow down","ref":"m1"}
}

func ExampleCloseStatus() {
	// What a hook returns, or what a client's connection ended with.
	err := fmt.Errorf("refusing alice: %w", &protocol.CloseError{Code: protocol.CloseForbidden, Reason: "banned"})
	fmt.Println(protocol.CloseStatus(err), int(protocol.CloseStatus(err)), protocol.CloseStatus(err).Retryable())
	fmt.Println(protocol.CloseStatus(errors.New("not a close")) == 0)
	// Output:
	// forbidden 4403 false
	// true
}
