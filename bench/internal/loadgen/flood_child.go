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
	"strconv"
	"strings"
	"sync"
	"time"
)

// A flood run from a child process, so that the attackers' own work (their
// dials, writes and read loops) can be kept off the server's CPU: the
// command that starts the child may pin it to a CPU of its own (taskset).

// Flooder is a running flood: in this process (Flood) or in a child
// (FloodChild).
type Flooder interface {
	Stats() FloodStats
	Stop() FloodStats
}

var _ Flooder = (*Flood)(nil)
var _ Flooder = (*FloodChild)(nil)

// The flood child learns its job from this environment variable:
// "URL SOCKETS INTERVAL".
const floodEnv = "WSAUTH_BENCH_FLOOD_CHILD"

// IsFloodChild reports whether this process was started by StartFloodChild.
func IsFloodChild() bool { return os.Getenv(floodEnv) != "" }

// FloodChild is a flood running in a child process.
type FloodChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr bytes.Buffer
	mu     sync.Mutex
	last   FloodStats
	done   bool
}

// StartFloodChild starts StartFlood(url, opts) in the child process that
// command returns (a binary that calls RunFloodChild when IsFloodChild),
// and returns once the child runs. Stats asks the child for its counts.
func StartFloodChild(ctx context.Context, url string, opts FloodOptions, command func() *exec.Cmd) (*FloodChild, error) {
	f := &FloodChild{cmd: command(), lines: make(chan string, 1)}
	stdin, stdout, err := startChild(f.cmd, fmt.Sprintf("%s=%s %d %s", floodEnv, url, opts.Sockets, opts.Interval), &f.stderr)
	if err != nil {
		return nil, err
	}
	f.stdin = stdin
	go func() {
		defer close(f.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-f.lines:
		if ok && line == "flooding" {
			return f, nil
		}
		err = fmt.Errorf("loadgen: flood child: %q: %s", line, lastLines(f.stderr.String()))
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = f.cmd.Process.Kill()
	f.Stop()
	return nil, err
}

// Stats returns the child's counts so far (the last ones it gave, if it
// does not answer within 5 seconds).
func (f *FloodChild) Stats() FloodStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return f.last
	}
	if _, err := io.WriteString(f.stdin, "stats\n"); err != nil {
		return f.last
	}
	select {
	case line, ok := <-f.lines:
		if ok {
			if st, err := parseFloodStats(line); err == nil {
				f.last = st
			}
		}
	case <-time.After(5 * time.Second):
	}
	return f.last
}

// Stop ends the flood and the child, and returns the last counts.
func (f *FloodChild) Stop() FloodStats {
	st := f.Stats()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.done {
		f.done = true
		_ = f.stdin.Close()
		for range f.lines {
		}
		_ = f.cmd.Wait()
	}
	return st
}

func formatFloodStats(st FloodStats) string {
	return fmt.Sprintf("stats %d %d %d %d %d", st.Connects, st.Refused, st.Failed, st.Frames, st.Closes)
}

func parseFloodStats(line string) (FloodStats, error) {
	f := strings.Fields(line)
	if len(f) != 6 || f[0] != "stats" {
		return FloodStats{}, fmt.Errorf("loadgen: flood child said %q", line)
	}
	var v [5]int64
	for i := range v {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return FloodStats{}, err
		}
		v[i] = n
	}
	return FloodStats{Connects: v[0], Refused: v[1], Failed: v[2], Frames: v[3], Closes: v[4]}, nil
}

// RunFloodChild is the child side of StartFloodChild: it floods, prints
// "flooding", answers each "stats" line on stdin with its counts, and
// stops the flood when stdin reaches EOF.
func RunFloodChild(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	f := strings.Fields(os.Getenv(floodEnv))
	if len(f) != 3 {
		return errors.New("loadgen: " + floodEnv + " must be \"URL SOCKETS INTERVAL\"")
	}
	sockets, err := strconv.Atoi(f[1])
	if err != nil {
		return err
	}
	interval, err := time.ParseDuration(f[2])
	if err != nil {
		return err
	}
	if _, err := RaiseFileLimit(uint64(sockets) + 256); err != nil {
		return err
	}
	flood := StartFlood(ctx, f[0], FloodOptions{Sockets: sockets, Interval: interval})
	defer flood.Stop()
	fmt.Fprintln(stdout, "flooding")
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		if sc.Text() == "stats" {
			fmt.Fprintln(stdout, formatFloodStats(flood.Stats()))
		}
	}
	return nil
}

// PinnedCommand returns a command that runs name with args pinned to the
// machine's last CPU with taskset (util-linux), and whether it could: where
// taskset is missing, or there is a single CPU, the command is not pinned.
func PinnedCommand(ctx context.Context, cpus int, name string, args ...string) (*exec.Cmd, bool) {
	taskset, err := exec.LookPath("taskset")
	if err != nil || cpus < 2 {
		return exec.CommandContext(ctx, name, args...), false
	}
	return exec.CommandContext(ctx, taskset, append([]string{"-c", strconv.Itoa(cpus - 1), name}, args...)...), true
}
