package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Mem is the process's memory at one moment, after a full GC.
type Mem struct {
	Heap  int64 // bytes of live heap objects (HeapAlloc)
	Stack int64 // bytes of goroutine stacks (StackInuse)
	RSS   int64 // resident set size (VmRSS), 0 where /proc is missing
}

// ReadMem collects garbage, returns freed memory to the OS and reads Mem.
func ReadMem() Mem {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Mem{Heap: int64(ms.HeapAlloc), Stack: int64(ms.StackInuse), RSS: rss()}
}

func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// IdleResult is the server's memory per idle connection.
type IdleResult struct {
	Conns             int
	Heap, Stack, RSS  float64 // bytes per connection
	Before, After     Mem
	Connect, Teardown time.Duration
}

// Row returns r as a table row.
func (r IdleResult) Row(target string) Row {
	return Row{Target: target, Mode: "idle", Conns: r.Conns, HeapPerConn: r.Heap + r.Stack, RSSPerConn: r.RSS}
}

// The idle child learns its job from this environment variable:
// "URL TOKEN-URL N", TOKEN-URL "-" for the gws baseline.
const idleEnv = "WSAUTH_BENCH_IDLE_CHILD"

// MeasureIdle has a child process hold n idle connections to srv, after
// authenticating them for wsauth, and returns srv's memory per connection:
// the growth of this process's heap, stacks and RSS, divided by n. The
// clients live in the child so that their memory is not counted. command
// returns the child's command; MeasureIdle adds the environment that
// RunIdleChild reads and talks to it over stdin and stdout.
func MeasureIdle(ctx context.Context, srv *Server, n int, command func() *exec.Cmd) (IdleResult, error) {
	tokenURL := "-"
	if srv.Kind == "wsauth" {
		tokenURL = srv.TokenURL
	}
	res := IdleResult{Conns: n}
	res.Before = ReadMem()
	start := time.Now()
	cmd := command()
	var stderr bytes.Buffer
	stdin, stdout, err := startChild(cmd, fmt.Sprintf("%s=%s %s %d", idleEnv, srv.URL, tokenURL, n), &stderr)
	if err != nil {
		return res, err
	}
	lines := make(chan string, 1)
	readerDone := make(chan struct{})
	waited := false
	defer func() {
		stdin.Close()
		if !waited {
			<-readerDone
			_ = cmd.Wait()
		}
	}()
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready ") {
				lines <- sc.Text()
			}
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			return res, fmt.Errorf("loadgen: idle child failed: %s", lastLines(stderr.String()))
		}
		if line != "ready "+strconv.Itoa(n) {
			return res, fmt.Errorf("loadgen: idle child: %q", line)
		}
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return res, ctx.Err()
	}
	if err := waitConns(ctx, srv, n); err != nil {
		return res, err
	}
	res.Connect = time.Since(start)
	res.After = ReadMem()
	res.Heap = float64(res.After.Heap-res.Before.Heap) / float64(n)
	res.Stack = float64(res.After.Stack-res.Before.Stack) / float64(n)
	res.RSS = float64(res.After.RSS-res.Before.RSS) / float64(n)

	start = time.Now()
	stdin.Close()
	waited = true
	<-readerDone
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("loadgen: idle child: %w: %s", err, lastLines(stderr.String()))
	}
	if err := waitConns(ctx, srv, 0); err != nil {
		return res, err
	}
	res.Teardown = time.Since(start)
	return res, nil
}

// waitConns waits until srv holds n connections.
func waitConns(ctx context.Context, srv *Server, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for srv.Conns() != n {
		if time.Now().After(deadline) {
			return fmt.Errorf("loadgen: server holds %d connections, want %d", srv.Conns(), n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func lastLines(s string) string {
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}

// IsIdleChild reports whether this process was started by MeasureIdle.
func IsIdleChild() bool { return os.Getenv(idleEnv) != "" }

// RunIdleChild is the child side of MeasureIdle: it opens the connections,
// prints "ready N", holds them until stdin reaches EOF, then closes them.
func RunIdleChild(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	f := strings.Fields(os.Getenv(idleEnv))
	if len(f) != 3 {
		return errors.New("loadgen: " + idleEnv + " must be \"URL TOKEN-URL N\"")
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		return err
	}
	if _, err := RaiseFileLimit(uint64(n) + 256); err != nil {
		return err
	}
	t := Target{Name: "gws", URL: f[0]}
	if f[1] != "-" {
		t = Target{Name: "wsauth", URL: f[0], Auth: true, Token: Cached(HTTPTokenSource(f[1], time.Hour))}
	}
	pool, err := Dial(ctx, t, n, DialOptions{})
	if err != nil {
		return err
	}
	defer pool.Close()
	fmt.Fprintf(stdout, "ready %d\n", n)
	_, _ = io.Copy(io.Discard, stdin)
	return nil
}
