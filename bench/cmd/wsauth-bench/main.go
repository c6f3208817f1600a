// Command wsauth-bench is a load generator for wsauth. It starts an
// in-process wsauth server, the plain gws baseline, the Centrifuge
// baseline, or several of them (measured in interleaved rounds), or drives
// an external wsauth endpoint such as the demo's, and prints a table:
// connections, messages per second, p50/p99 latency and bytes per
// connection.
//
// It belongs to the bench module (github.com/wsauth/wsauth/bench), not to
// the library's; run it from the bench/ directory:
//
//	go run ./cmd/wsauth-bench -target both -mode echo -conns 100 -payload 64 -duration 10s
//	go run ./cmd/wsauth-bench -target all -mode echo -window 256 -conns 1 -duration 10s
//	go run ./cmd/wsauth-bench -target gws,wsauth,centrifuge -mode handshake -workers 16
//	go run ./cmd/wsauth-bench -target wsauth -mode push -conns 1000 -cpuprofile cpu.out
//	go run ./cmd/wsauth-bench -mode idle -conns 10000
//	go run ./cmd/wsauth-bench -url ws://127.0.0.1:8080/ws -token-url http://127.0.0.1:8080/token -mode echo -conns 10
//
// Modes: echo (round-trips, -window in flight per connection: 1 by
// default, e.g. 256 for a pipelining client), push (the
// server sends; in-process only, external servers are measured by counting
// what they send, e.g. the demo's -tick), handshake (connect + auth +
// auth_ok + close, -workers at a time) and idle (server memory per idle
// connection; the clients run in a child process, in-process targets only).
// The Centrifuge baseline runs echo (an RPC that returns its data) and
// handshake (connect with the same JWT) only.
//
// Every run is bounded: -duration (at most 10 minutes) plus setup, and a
// progress line goes to stderr every 5 seconds. The whole process, clients
// and servers, runs on the same cores: compare targets measured in the same
// run, never numbers of different runs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/wsauth/wsauth/bench/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if loadgen.IsIdleChild() {
		err = loadgen.RunIdleChild(ctx, os.Stdin, os.Stdout)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "wsauth-bench:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage error")

// maxDuration bounds -duration.
const maxDuration = 10 * time.Minute

type config struct {
	targets  []string // in-process: "gws", "wsauth", "centrifuge"
	url      string   // external endpoint
	tokenURL string
	tokenTTL time.Duration
	mode     string
	conns    int
	payload  int
	duration time.Duration
	rounds   int
	window   int
	workers  int
	alg      string
	gws      loadgen.GwsOptions
	cpuProf  string
	memProf  string
	mutexPro string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("wsauth-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "both", "in-process `servers`: wsauth, gws, centrifuge, a comma-separated list of them, "+
		"both (gws,wsauth) or all (gws,wsauth,centrifuge); several run in interleaved rounds")
	fs.StringVar(&cfg.url, "url", "", "drive an external wsauth endpoint at this ws:// `URL` instead")
	fs.StringVar(&cfg.tokenURL, "token-url", "", "development IdP token `URL` of the external endpoint (POST {\"sub\",\"ttl\"})")
	fs.DurationVar(&cfg.tokenTTL, "token-ttl", 15*time.Minute, "lifetime of the tokens asked from -token-url")
	fs.StringVar(&cfg.mode, "mode", "echo", "`mode`: echo, push, handshake or idle")
	fs.IntVar(&cfg.conns, "conns", 100, "concurrent `connections`")
	fs.IntVar(&cfg.payload, "payload", 64, "frame size in `bytes` (echo, push; at least 53)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured time per target (at most 10m)")
	fs.IntVar(&cfg.rounds, "rounds", 3, "rounds per target with -target both: wsauth and gws alternate")
	fs.IntVar(&cfg.window, "window", 0, "messages in flight per connection: echo 1 by default (256 for a pipelining client), "+
		"push 4096/conns between 4 and 64 by default")
	fs.IntVar(&cfg.workers, "workers", 16, "handshake: concurrent handshakes")
	fs.StringVar(&cfg.alg, "alg", "RS256", "in-process IdP `algorithm`: RS256 or ES256")
	variants := fs.String("gws", "", "comma-separated `variants` of the gws baseline, to measure a design change first: "+
		"async-echo (echo through gws's write queue, as Session.Send does), readloop-in-handler (read on the HTTP handler goroutine)")
	fs.StringVar(&cfg.cpuProf, "cpuprofile", "", "write a CPU profile to `file`")
	fs.StringVar(&cfg.memProf, "memprofile", "", "write an allocation profile to `file`")
	fs.StringVar(&cfg.mutexPro, "mutexprofile", "", "write a mutex contention profile to `file`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	fail := func(format string, a ...any) (*config, error) {
		fmt.Fprintf(stderr, "wsauth-bench: "+format+"\n", a...)
		fs.Usage()
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		return fail("unexpected arguments: %q", fs.Args())
	}
	for _, v := range strings.Split(*variants, ",") {
		switch strings.TrimSpace(v) {
		case "":
		case "async-echo":
			cfg.gws.AsyncEcho = true
		case "readloop-in-handler":
			cfg.gws.ReadLoopInHandler = true
		default:
			return fail("unknown -gws variant %q", v)
		}
	}
	switch *target {
	case "both":
		cfg.targets = []string{"gws", "wsauth"}
	case "all":
		cfg.targets = []string{"gws", "wsauth", "centrifuge"}
	default:
		seen := map[string]bool{}
		for _, t := range strings.Split(*target, ",") {
			t = strings.TrimSpace(t)
			switch {
			case t != "wsauth" && t != "gws" && t != "centrifuge":
				return fail("-target must be wsauth, gws, centrifuge, a list of them, both or all")
			case seen[t]:
				return fail("-target names %s twice", t)
			}
			seen[t] = true
			cfg.targets = append(cfg.targets, t)
		}
	}
	switch cfg.mode {
	case "echo", "push", "handshake", "idle":
	default:
		return fail("-mode must be echo, push, handshake or idle")
	}
	switch {
	case cfg.conns <= 0:
		return fail("-conns must be positive")
	case cfg.duration <= 0 || cfg.duration > maxDuration:
		return fail("-duration must be positive and at most %s", maxDuration)
	case cfg.rounds <= 0:
		return fail("-rounds must be positive")
	case cfg.workers <= 0:
		return fail("-workers must be positive")
	case (cfg.mode == "echo" || cfg.mode == "push") && cfg.payload < 53:
		return fail("-payload must be at least 53 bytes")
	case cfg.alg != "RS256" && cfg.alg != "ES256":
		return fail("-alg must be RS256 or ES256")
	case cfg.window < 0:
		return fail("-window must not be negative")
	case slices.Contains(cfg.targets, "centrifuge") && cfg.mode != "echo" && cfg.mode != "handshake":
		return fail("the centrifuge target runs -mode echo and handshake only")
	}
	if cfg.url != "" {
		if !strings.HasPrefix(cfg.url, "ws://") && !strings.HasPrefix(cfg.url, "wss://") {
			return fail("-url must be a ws:// or wss:// URL")
		}
		if cfg.tokenURL == "" {
			return fail("-url needs -token-url")
		}
		if cfg.mode == "idle" {
			cfg.rounds = 1
		}
	}
	if len(cfg.targets) == 1 || cfg.url != "" {
		cfg.rounds = 1
	}
	return cfg, nil
}

// shape returns the connections and payload a result row shows: for
// handshakes, the concurrent handshakes and no payload.
func (cfg *config) shape() (conns, payload int) {
	if cfg.mode == "handshake" {
		return cfg.workers, 0
	}
	return cfg.conns, cfg.payload
}

// run parses args, runs the benchmark and prints its table to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	// Setup (dialling thousands of connections) and teardown are bounded
	// too: generously, but never forever.
	ctx, cancel := context.WithTimeout(ctx, 2*cfg.duration*time.Duration(len(cfg.targets))+5*time.Minute)
	defer cancel()
	if _, err := loadgen.RaiseFileLimit(uint64(4*cfg.conns + 512)); err != nil {
		fmt.Fprintln(stderr, "wsauth-bench: raising RLIMIT_NOFILE:", err)
	}
	stopProfiles, err := startProfiles(cfg)
	if err != nil {
		return err
	}
	var rows []loadgen.Row
	if cfg.url != "" {
		rows, err = runExternal(ctx, cfg, stderr)
	} else {
		rows, err = runInProcess(ctx, cfg, stderr)
	}
	if perr := stopProfiles(); err == nil {
		err = perr
	}
	if len(rows) > 0 {
		if werr := loadgen.WriteTable(stdout, rows); err == nil {
			err = werr
		}
	}
	return err
}

func startProfiles(cfg *config) (stop func() error, err error) {
	var cpu *os.File
	if cfg.cpuProf != "" {
		if cpu, err = os.Create(cfg.cpuProf); err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			cpu.Close()
			return nil, err
		}
	}
	if cfg.mutexPro != "" {
		runtime.SetMutexProfileFraction(5)
	}
	if cfg.memProf != "" {
		runtime.MemProfileRate = 4096
	}
	return func() error {
		var errs []error
		if cpu != nil {
			pprof.StopCPUProfile()
			errs = append(errs, cpu.Close())
		}
		write := func(name, path string) {
			if path == "" {
				return
			}
			f, err := os.Create(path)
			if err != nil {
				errs = append(errs, err)
				return
			}
			errs = append(errs, pprof.Lookup(name).WriteTo(f, 0), f.Close())
		}
		write("allocs", cfg.memProf)
		write("mutex", cfg.mutexPro)
		return errors.Join(errs...)
	}, nil
}

// progress prints a progress line to w.
func progress(w io.Writer, name string) loadgen.Progress {
	return func(elapsed time.Duration, msgs int64, h *loadgen.Histogram) {
		fmt.Fprintf(w, "%s: %s, %d msgs, %.0f msgs/s, p50 %v, p99 %v\n", name, elapsed.Round(time.Second), msgs,
			float64(msgs)/elapsed.Seconds(), h.Quantile(0.5).Round(time.Microsecond), h.Quantile(0.99).Round(time.Microsecond))
	}
}

func runInProcess(ctx context.Context, cfg *config, stderr io.Writer) ([]loadgen.Row, error) {
	servers := make([]*loadgen.Server, len(cfg.targets))
	defer func() {
		for _, s := range servers {
			if s != nil {
				if err := s.Close(); err != nil {
					fmt.Fprintf(stderr, "wsauth-bench: closing %s: %v\n", s.Kind, err)
				}
			}
		}
	}()
	for i, name := range cfg.targets {
		var err error
		switch name {
		case "gws":
			servers[i], err = loadgen.StartGws(cfg.gws)
		case "centrifuge":
			servers[i], err = loadgen.StartCentrifuge(cfg.alg)
		default:
			servers[i], err = loadgen.StartWsauth(loadgen.ServerOptions{Algorithm: cfg.alg})
		}
		if err != nil {
			return nil, err
		}
	}
	if cfg.mode == "idle" {
		return runIdle(ctx, cfg, servers, stderr)
	}
	pools := make([]*loadgen.Pool, len(servers))
	defer func() {
		for _, p := range pools {
			if p != nil {
				p.Close()
			}
		}
	}()
	if cfg.mode != "handshake" {
		for i, s := range servers {
			fmt.Fprintf(stderr, "%s: dialling %d connections\n", s.Kind, cfg.conns)
			var err error
			if pools[i], err = loadgen.Dial(ctx, s.Target(), cfg.conns, loadgen.DialOptions{}); err != nil {
				return nil, fmt.Errorf("%s: %w", s.Kind, err)
			}
		}
	}
	stats := make([]loadgen.Stats, len(servers))
	per := cfg.duration / time.Duration(cfg.rounds)
	for r := range cfg.rounds {
		for j := range servers {
			i := (j + r/2) % len(servers) // rotate which target goes first
			if r%2 == 1 {                 // and alternate the direction
				i = len(servers) - 1 - i
			}
			s := servers[i]
			st, err := runPhase(ctx, cfg, s.Target(), pools[i], s.Push(), per, progress(stderr, s.Kind))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.Kind, err)
			}
			stats[i].Add(st)
		}
	}
	conns, payload := cfg.shape()
	var rows []loadgen.Row
	for i, s := range servers {
		rows = append(rows, stats[i].Row(s.Kind, cfg.mode, conns, payload))
	}
	return append(rows, ratios(rows)...), nil
}

// ratios compares wsauth's row with each baseline's, if wsauth ran.
func ratios(rows []loadgen.Row) []loadgen.Row {
	i := slices.IndexFunc(rows, func(r loadgen.Row) bool { return r.Target == "wsauth" })
	if i < 0 || len(rows) < 2 {
		return nil
	}
	var out []loadgen.Row
	for _, base := range rows {
		if base.Target != "wsauth" {
			r := loadgen.Ratio(rows[i], base)
			r.Target = "wsauth/" + base.Target
			out = append(out, r)
		}
	}
	return out
}

func runPhase(ctx context.Context, cfg *config, t loadgen.Target, pool *loadgen.Pool, push loadgen.PushFunc, d time.Duration, p loadgen.Progress) (loadgen.Stats, error) {
	switch cfg.mode {
	case "echo":
		return pool.EchoFor(ctx, d, cfg.payload, max(cfg.window, 1), p)
	case "push":
		if push == nil {
			return pool.CountFor(ctx, d, p)
		}
		window := cfg.window
		if window <= 0 {
			window = min(64, max(4, 4096/cfg.conns))
		}
		return pool.PushFor(ctx, d, cfg.payload, window, push, p)
	default: // handshake
		return loadgen.Handshakes(ctx, t, 0, d, cfg.workers, loadgen.DialOptions{}, p)
	}
}

func runIdle(ctx context.Context, cfg *config, servers []*loadgen.Server, stderr io.Writer) ([]loadgen.Row, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	child := func() *exec.Cmd { return exec.CommandContext(ctx, self) }
	var rows []loadgen.Row
	for _, s := range servers {
		fmt.Fprintf(stderr, "%s: %d idle connections from a child process\n", s.Kind, cfg.conns)
		res, err := loadgen.MeasureIdle(ctx, s, cfg.conns, child)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Kind, err)
		}
		fmt.Fprintf(stderr, "%s: heap %.0f B/conn, stacks %.0f B/conn, RSS %.0f B/conn (connect %v)\n",
			s.Kind, res.Heap, res.Stack, res.RSS, res.Connect.Round(time.Millisecond))
		rows = append(rows, res.Row(s.Kind))
	}
	return append(rows, ratios(rows)...), nil
}

// runExternal drives an endpoint this process does not run: no push and no
// server memory, only what the clients see.
func runExternal(ctx context.Context, cfg *config, stderr io.Writer) ([]loadgen.Row, error) {
	mint := loadgen.HTTPTokenSource(cfg.tokenURL, cfg.tokenTTL)
	t := loadgen.Target{Name: cfg.url, URL: cfg.url, Auth: true, Token: loadgen.Cached(mint), Refresh: mint}
	var pool *loadgen.Pool
	if cfg.mode != "handshake" {
		fmt.Fprintf(stderr, "dialling %d connections to %s\n", cfg.conns, cfg.url)
		var err error
		if pool, err = loadgen.Dial(ctx, t, cfg.conns, loadgen.DialOptions{}); err != nil {
			return nil, err
		}
		defer pool.Close()
	}
	if cfg.mode == "idle" {
		fmt.Fprintf(stderr, "holding %d connections for %v\n", cfg.conns, cfg.duration)
		st, err := pool.CountFor(ctx, cfg.duration, progress(stderr, "idle"))
		row := st.Row(cfg.url, "idle", cfg.conns, 0)
		row.Errors = pool.Closes()
		return []loadgen.Row{row}, err
	}
	st, err := runPhase(ctx, cfg, t, pool, nil, cfg.duration, progress(stderr, cfg.mode))
	if err != nil {
		return nil, err
	}
	conns, payload := cfg.shape()
	row := st.Row(cfg.url, cfg.mode, conns, payload)
	if pool != nil {
		row.Errors = pool.Closes()
	}
	return []loadgen.Row{row}, nil
}
