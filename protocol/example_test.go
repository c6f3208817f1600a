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

func ExampleAppendMessage() {
	data := json.RawMessage(`{"text":"hi"}`)
	if !protocol.ValidData(data) {
		return
	}
	buf := make([]byte, 0, 64) // reused for every frame: no allocation per message
	buf = protocol.AppendMessage(buf[:0], data)
	fmt.Println(string(buf))
	buf = protocol.AppendError(buf[:0], 4429, "slow down", "m1")
	fmt.Println(string(buf))
	// Output:
	// {"type":"message","data":{"text":"hi"}}
	// {"type":"error","code":4429,"message":"slow down","ref":"m1"}
}
