// Package bench measures wsauth against a bare gws server and, for echo,
// pipelined echo and handshakes, against Centrifuge
// (github.com/centrifugal/centrifuge, configured in
// internal/loadgen/centrifuge.go). It is a module
// of its own (github.com/wsauth/wsauth/bench, with a replace directive
// pointing at the library in ../), so that the library's module and its
// tests do not depend on the load generator; like the benchmarks, it uses
// only wsauth's public API.
//
// The package has no code of its own: its tests are the benchmarks
// (BenchmarkEcho, BenchmarkPipelined, BenchmarkPush, BenchmarkHandshake, BenchmarkIdleMemory,
// BenchmarkReauthStorm, BenchmarkUnderAttack), built on internal/loadgen,
// which cmd/wsauth-bench also drives from the command line. Every figure
// is a ratio of targets measured in the same process in interleaved
// rounds; docs/benchmarks.md (at the repository's root) has the numbers and
// the commands. From this directory:
//
//	go test -run '^$' -bench . -benchtime 1x ./...         # every benchmark once
//	go test -run '^$' -bench Echo -count 6 .                # one benchmark, for benchstat
//	go test -run '^$' -bench IdleMemory -wsauth.heavy .     # at 10,000 connections
//	go run ./cmd/wsauth-bench -target both -mode echo -conns 100
//	go run ./cmd/wsauth-bench -target all -mode echo -window 256 -conns 1
//
// The Centrifuge dependency is why this module's go line is 1.26.0
// (centrifuge v0.40.1 declares it); the library's module stays at 1.25.0.
package bench
