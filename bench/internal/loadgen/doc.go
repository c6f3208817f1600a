// Package loadgen is the load generator behind the wsauth-bench command
// (bench/cmd/wsauth-bench) and the benchmarks in bench/*_test.go. It is
// internal to the bench module, not an API: it uses only wsauth's public
// API, and nothing outside bench/ can import it.
//
// It starts in-process targets, a wsauth Server (with an in-process
// identity provider) or a plain gws echo/push server built with the same gws
// options, or connects to an external wsauth endpoint; opens pools of gws
// client connections; and drives them in phases: echo round-trips, server
// push, handshakes, idle connections for memory, and a flood of
// unauthenticated sockets. Latencies go into a Histogram; results print as a
// table (WriteTable). Two phases put their clients in a child process, so
// that each process stays under the descriptor limit at 10,000 connections:
// idle memory (MeasureIdle) and the reauth storm (StartStorm, whose child
// checks the order of every session's messages and reports over a pipe).
// A flood can run in a child too (StartFloodChild), pinned to a CPU of its
// own with taskset (PinnedCommand), so that the attackers' work stays off
// the server's CPU.
//
// # Goroutines
//
// Every client connection runs gws's ReadLoop on its own goroutine, which
// handles the frames the server sends: in an echo phase it also sends the
// next message, so each connection has exactly one round-trip in flight.
// Push phases run their own pusher goroutines; Flood runs one goroutine per
// attacking socket. Every phase is bounded by its context and returns only
// after its goroutines have finished; Pool.Close waits for the read loops.
//
// # Example
//
//	srv, _ := loadgen.StartWsauth(loadgen.ServerOptions{})
//	defer srv.Close()
//	pool, _ := loadgen.Dial(ctx, srv.Target(), 100, loadgen.DialOptions{})
//	defer pool.Close()
//	st, _ := pool.Echo(ctx, 100_000, 64)
//	fmt.Println(st.Rate(), st.Hist.Quantile(0.99))
package loadgen
