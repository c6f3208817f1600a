package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A reauth storm (the bench module's BenchmarkReauthStorm) puts its clients
// in a child process: every process has its own RLIMIT_NOFILE, so the server
// and the clients each need one descriptor per session instead of the
// benchmark's process needing two.
//
// The parent (Storm) holds the server and its fake clock; the child
// (RunStormChild) holds the clients, answers reauth_required with the tokens
// the parent gave it and checks, per session, that the numbered ticks the
// server sends arrive each exactly once and in order. They speak over the
// child's stdin and stdout: the parent writes commands, one JSON value each;
// the child answers each with one line "storm {JSON}" (a StormReport).
// Other stdout lines (the test framework's) and stderr are kept for error
// messages.
//
//	{"op":"tokens","round":R,"tokens":{SUB:TOKEN,…}}  use these tokens from now on
//	{"op":"dial"}                        open and authenticate the connections;
//	                                     the answer lists their session ids
//	{"op":"reauth","round":R}            answer "armed" at once, then "reauth"
//	                                     when every connection has had R fresh
//	                                     auth_oks (or none came for a while)
//	{"op":"drain","round":R,"sent":[…]}  answer when connection i has had every
//	                                     tick up to sent[i] (or none came for a while)
//
// Stdin reaching EOF ends the child: it stops waiting, closes its
// connections and exits.
//
// Timing: the storm's durations are differences of StormNow readings
// (CLOCK_MONOTONIC on Linux), one clock shared by both processes. The
// parent reads it just before it jumps its fake clock; the child reads it
// when its 1 ms poll first sees every connection's fresh auth_ok (reauth)
// or last tick (drain) and reports that reading (StormReport.End). Neither
// the pipe nor the parent's scheduler, busy serving the storm, delays the
// end stamp. The child answers the reauth command with "armed" before it
// starts polling, and the parent jumps the clock only after reading that,
// so the child is watching before the storm starts.

// The child learns its job from this environment variable: "URL N SUBJECTS".
const stormEnv = "WSAUTH_BENCH_STORM_CHILD"

// stormStall is how long the child waits without any progress (no fresh
// auth_ok, no tick) before it answers that the storm is stuck.
const stormStall = 10 * time.Second

// IsStormChild reports whether this process was started by StartStorm.
func IsStormChild() bool { return os.Getenv(stormEnv) != "" }

// stormCmd is one command of the parent.
type stormCmd struct {
	Op     string            `json:"op"`
	Round  int               `json:"round,omitempty"`
	Tokens map[string]string `json:"tokens,omitempty"`
	Sent   []int64           `json:"sent,omitempty"`
}

// StormReport is the child's answer to one command.
type StormReport struct {
	Op    string `json:"op"` // the command answered, or "error"
	Round int    `json:"round,omitempty"`
	// Err says why the child gave up (Op "error"): a dial failure, a bad
	// command, stdin closed during a wait.
	Err string `json:"err,omitempty"`
	// Sessions (dial) is the session id of every connection, by index.
	Sessions []string `json:"sessions,omitempty"`
	// Conns is the number of connections.
	Conns int `json:"conns,omitempty"`
	// Reauthed (reauth) is how many connections had their Round-th fresh
	// auth_ok.
	Reauthed int `json:"reauthed,omitempty"`
	// Drain: Ticks is the number of the last tick of every connection,
	// summed: the ticks delivered over all rounds. Lost ticks never
	// arrived; Dup ones arrived again; Reordered ones arrived after a later
	// one; Unexpected ones were never sent (numbered past sent[i]).
	Ticks      int64 `json:"ticks,omitempty"`
	Lost       int64 `json:"lost,omitempty"`
	Dup        int64 `json:"dup,omitempty"`
	Reordered  int64 `json:"reordered,omitempty"`
	Unexpected int64 `json:"unexpected,omitempty"`
	// Closes is the number of connections the server closed or lost;
	// ErrorFrames the error frames received and the refreshes that failed
	// (Conn.ErrorFrames). Both are cumulative.
	Closes      int64 `json:"closes,omitempty"`
	ErrorFrames int64 `json:"error_frames,omitempty"`
	// Detail describes the first problem seen, if any.
	Detail string `json:"detail,omitempty"`
	// End (reauth, drain) is the StormNow reading at the end of the wait.
	End int64 `json:"end,omitempty"`

	// At is the StormNow reading when the parent read the answer.
	At int64 `json:"-"`
}

// Since returns the time from t0, a StormNow reading of the parent's taken
// before the child's wait, to the end of that wait. It fails if the clock
// disagrees: the end before t0, or after the parent read the answer.
func (r StormReport) Since(t0 int64) (time.Duration, error) {
	if r.End < t0 || r.End > r.At {
		return 0, fmt.Errorf("loadgen: storm %s round %d: the child's end stamp is %v after the start, the parent read it %v after",
			r.Op, r.Round, time.Duration(r.End-t0), time.Duration(r.At-t0))
	}
	return time.Duration(r.End - t0), nil
}

// Check returns an error describing what went wrong in the round: a
// session that did not reauthenticate, a tick lost, duplicated, reordered
// or never sent, a connection closed, an error frame.
func (r StormReport) Check() error {
	var problems []string
	if r.Op == "reauth" && r.Reauthed < r.Conns {
		problems = append(problems, fmt.Sprintf("%d of %d sessions reauthenticated when the wait ended", r.Reauthed, r.Conns))
	}
	for _, p := range []struct {
		n    int64
		what string
	}{
		{r.Lost, "ticks lost"}, {r.Dup, "ticks duplicated"}, {r.Reordered, "ticks reordered"},
		{r.Unexpected, "ticks never sent"}, {r.Closes, "connections closed"}, {r.ErrorFrames, "error frames or failed refreshes"},
	} {
		if p.n > 0 {
			problems = append(problems, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	msg := fmt.Sprintf("storm round %d (%s): %s", r.Round, r.Op, strings.Join(problems, ", "))
	if r.Detail != "" {
		msg += "; first: " + r.Detail
	}
	return errors.New(msg)
}

// Storm is the parent's side of a reauth storm: the child process and the
// pipes to it.
type Storm struct {
	// Sessions is the session id of every child connection, by index.
	Sessions []string

	cmd        *exec.Cmd // nil in tests that run the child in-process
	stdin      io.WriteCloser
	enc        *json.Encoder
	reports    chan StormReport // closed when the child's stdout ends
	quit       chan struct{}    // closed by Close: stop delivering reports
	readerDone chan struct{}
	out        *tailWriter // stderr and non-protocol stdout
	closed     bool
}

// StartStorm starts the child command (a process running RunStormChild,
// e.g. the test binary running a test that calls it), adds the environment
// it reads, gives it the initial tokens (subject -> token) and has it open
// n connections to the wsauth endpoint url, over subjects subjects, as
// DialOptions.Subjects does. It returns once all are authenticated; on
// failure the child is gone.
func StartStorm(ctx context.Context, cmd *exec.Cmd, url string, n, subjects int, tokens map[string]string) (*Storm, error) {
	out := &tailWriter{}
	cmd.WaitDelay = 5 * time.Second
	stdin, stdout, err := startChild(cmd, fmt.Sprintf("%s=%s %d %d", stormEnv, url, n, subjects), out)
	if err != nil {
		return nil, err
	}
	s := newStorm(stdin, stdout, out)
	s.cmd = cmd
	if err := s.start(ctx, n, tokens); err != nil {
		_ = cmd.Process.Kill()
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func newStorm(stdin io.WriteCloser, stdout io.Reader, out *tailWriter) *Storm {
	s := &Storm{
		stdin:      stdin,
		enc:        json.NewEncoder(stdin),
		reports:    make(chan StormReport, 4),
		quit:       make(chan struct{}),
		readerDone: make(chan struct{}),
		out:        out,
	}
	go s.read(stdout)
	return s
}

// read delivers the child's answers, stamped with the time they arrive,
// until its stdout ends.
func (s *Storm) read(stdout io.Reader) {
	defer close(s.readerDone)
	defer close(s.reports)
	br := bufio.NewReaderSize(stdout, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if rest, ok := bytes.CutPrefix(line, []byte("storm ")); ok {
			at := StormNow()
			var r StormReport
			if jerr := json.Unmarshal(rest, &r); jerr != nil {
				r = StormReport{Op: "error", Err: fmt.Sprintf("unreadable answer %.200q: %v", rest, jerr)}
			}
			r.At = at
			select {
			case s.reports <- r:
			case <-s.quit:
			}
		} else if len(line) > 0 {
			_, _ = s.out.Write(line)
		}
		if err != nil {
			return
		}
	}
}

func (s *Storm) start(ctx context.Context, n int, tokens map[string]string) error {
	if err := s.Tokens(ctx, 0, tokens); err != nil {
		return err
	}
	if err := s.send(stormCmd{Op: "dial"}); err != nil {
		return err
	}
	r, err := s.wait(ctx, "dial", 0, 5*time.Minute)
	if err != nil {
		return err
	}
	if len(r.Sessions) != n {
		return fmt.Errorf("loadgen: storm child opened %d connections, want %d", len(r.Sessions), n)
	}
	s.Sessions = r.Sessions
	return nil
}

// Tokens gives the child the tokens (subject -> token) to answer
// reauth_required with from now on, and waits until it has them.
func (s *Storm) Tokens(ctx context.Context, round int, tokens map[string]string) error {
	if err := s.send(stormCmd{Op: "tokens", Round: round, Tokens: tokens}); err != nil {
		return err
	}
	_, err := s.wait(ctx, "tokens", round, time.Minute)
	return err
}

// Reauth tells the child that round's storm is about to start and waits
// until it is watching for fresh auth_oks; it returns the round trip. Jump
// the clock then, and call WaitReauth.
func (s *Storm) Reauth(ctx context.Context, round int) (time.Duration, error) {
	start := StormNow()
	if err := s.send(stormCmd{Op: "reauth", Round: round}); err != nil {
		return 0, err
	}
	r, err := s.wait(ctx, "armed", round, time.Minute)
	if err != nil {
		return 0, err
	}
	return time.Duration(r.At - start), nil
}

// WaitReauth waits for the child's answer to Reauth: every connection has
// had round fresh auth_oks, or none came for stormStall. Check the report.
func (s *Storm) WaitReauth(ctx context.Context, round int) (StormReport, error) {
	return s.wait(ctx, "reauth", round, 5*time.Minute)
}

// Drain gives the child the number of the last tick sent to each
// connection and waits until it has received them all, or none came for
// stormStall. Check the report.
func (s *Storm) Drain(ctx context.Context, round int, sent []int64) (StormReport, error) {
	if err := s.send(stormCmd{Op: "drain", Round: round, Sent: sent}); err != nil {
		return StormReport{}, err
	}
	return s.wait(ctx, "drain", round, 5*time.Minute)
}

func (s *Storm) send(c stormCmd) error {
	if err := s.enc.Encode(c); err != nil {
		return fmt.Errorf("loadgen: storm child: %w: %s", err, s.out.tail())
	}
	return nil
}

// wait returns the child's next answer, which must be to op in round.
func (s *Storm) wait(ctx context.Context, op string, round int, timeout time.Duration) (StormReport, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r, ok := <-s.reports:
		switch {
		case !ok:
			return r, fmt.Errorf("loadgen: storm child ended before answering %s: %s", op, s.out.tail())
		case r.Op == "error":
			return r, fmt.Errorf("loadgen: storm child failed: %s: %s", r.Err, s.out.tail())
		case r.Op != op || r.Round != round:
			return r, fmt.Errorf("loadgen: storm child answered %s round %d, want %s round %d", r.Op, r.Round, op, round)
		}
		return r, nil
	case <-timer.C:
		return StormReport{}, fmt.Errorf("loadgen: storm child did not answer %s round %d within %v", op, round, timeout)
	case <-ctx.Done():
		return StormReport{}, ctx.Err()
	}
}

// Close ends the child: it closes the child's stdin, which makes the child
// stop waiting, close its connections and exit, and waits for it (killing
// it after 30 s). It returns an error if the child failed.
func (s *Storm) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.stdin.Close()
	close(s.quit)
	exited := make(chan error, 1)
	go func() {
		<-s.readerDone
		if s.cmd != nil {
			exited <- s.cmd.Wait()
		} else {
			exited <- nil
		}
	}()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("loadgen: storm child: %w: %s", err, s.out.tail())
		}
		return nil
	case <-timer.C:
		if s.cmd != nil {
			_ = s.cmd.Process.Kill()
		}
		<-exited
		return fmt.Errorf("loadgen: storm child did not exit within 30s of its stdin closing; killed: %s", s.out.tail())
	}
}

// tailWriter keeps the last 4 KiB written to it.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > 4096 {
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-4096:]...)
	}
	return len(p), nil
}

func (w *tailWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) == 0 {
		return "(no output)"
	}
	return string(w.buf)
}

// RunStormChild is the child side of StartStorm: it runs the parent's
// commands from stdin and answers them on stdout until stdin reaches EOF,
// then closes its connections. It returns the first error it answered.
func RunStormChild(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	f := strings.Fields(os.Getenv(stormEnv))
	if len(f) != 3 {
		return errors.New("loadgen: " + stormEnv + " must be \"URL N SUBJECTS\"")
	}
	n, err1 := strconv.Atoi(f[1])
	subjects, err2 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2); err != nil || n <= 0 || subjects <= 0 {
		return fmt.Errorf("loadgen: %s=%q: %v", stormEnv, os.Getenv(stormEnv), err)
	}
	if _, err := RaiseFileLimit(uint64(n) + 256); err != nil {
		return err
	}
	return runStormChild(ctx, f[0], n, subjects, stdin, stdout)
}

func runStormChild(ctx context.Context, url string, n, subjects int, stdin io.Reader, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmds := make(chan stormCmd, 4)
	go func() {
		// Stdin reaching EOF (or garbage) ends every wait.
		defer cancel()
		defer close(cmds)
		dec := json.NewDecoder(stdin)
		for {
			var c stormCmd
			if err := dec.Decode(&c); err != nil {
				if !errors.Is(err, io.EOF) {
					cmds <- stormCmd{Op: "bad input: " + err.Error()}
				}
				return
			}
			cmds <- c
		}
	}()
	// Whatever happens, read stdin to its end, so that the goroutine above
	// has ended when this returns.
	defer func() {
		for range cmds {
		}
	}()

	var tokens atomic.Pointer[map[string]string]
	source := func(_ context.Context, sub string) (string, error) {
		if m := tokens.Load(); m != nil {
			if tok, ok := (*m)[sub]; ok {
				return tok, nil
			}
		}
		return "", fmt.Errorf("loadgen: storm child has no token for %q", sub)
	}
	st := &stormState{sess: make([]stormTicks, n)}
	var pool *Pool
	defer func() {
		if pool != nil {
			pool.Close()
		}
	}()
	armed := false
	for c := range cmds {
		var r StormReport
		var err error
		switch {
		case c.Op == "tokens":
			tokens.Store(&c.Tokens)
			r = StormReport{Op: c.Op, Round: c.Round}
		case c.Op == "dial" && pool == nil:
			t := Target{Name: "wsauth", URL: url, Auth: true, Token: source}
			pool, err = Dial(ctx, t, n, DialOptions{Subjects: subjects, Refresh: source, OnData: st.onData})
			if err == nil {
				r = StormReport{Op: c.Op, Conns: n, Sessions: make([]string, n)}
				for i, conn := range pool.Conns {
					r.Sessions[i] = conn.Session()
				}
			}
		case c.Op == "reauth" && pool != nil:
			if err := answer(stdout, StormReport{Op: "armed", Round: c.Round}); err != nil {
				return err
			}
			armed = true
			r, err = st.waitReauth(ctx, pool, c.Round)
		case c.Op == "drain" && armed && len(c.Sent) == n:
			r, err = st.waitDrain(ctx, pool, c.Round, c.Sent)
		default:
			err = fmt.Errorf("unexpected command %q (round %d)", c.Op, c.Round)
		}
		if err != nil {
			r = StormReport{Op: "error", Round: c.Round, Err: err.Error()}
		}
		if werr := answer(stdout, r); werr != nil {
			return werr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// answer writes r to the parent.
func answer(stdout io.Writer, r StormReport) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "storm %s\n", b)
	return err
}

// stormState is the child's record of the ticks of every connection.
type stormState struct {
	sess  []stormTicks
	ticks atomic.Int64 // ticks received, all connections: progress

	detailMu sync.Mutex
	detail   string // the first problem seen
}

// stormTicks is one connection's record, written by its read goroutine.
type stormTicks struct {
	mu   sync.Mutex
	last atomic.Int64 // the highest tick received; written under mu
	// missing holds the ticks skipped when a higher one arrived: lost
	// unless they come later (reordered).
	missing                    map[int64]struct{}
	dup, reordered, unexpected int64
}

func (s *stormState) note(format string, args ...any) {
	s.detailMu.Lock()
	defer s.detailMu.Unlock()
	if s.detail == "" {
		s.detail = fmt.Sprintf(format, args...)
	}
}

var tickKey = []byte(`"tick":`)

// onData checks a message frame {"type":"message","data":{"tick":K}}: K
// must be the connection's last tick + 1.
func (s *stormState) onData(c *Conn, frame []byte) {
	i := bytes.Index(frame, tickKey)
	if i < 0 {
		return
	}
	rest := frame[i+len(tickKey):]
	end := bytes.IndexByte(rest, '}')
	if end < 0 {
		end = len(rest)
	}
	k, err := strconv.ParseInt(string(rest[:end]), 10, 64)
	t := &s.sess[c.Index]
	t.mu.Lock()
	defer t.mu.Unlock()
	s.ticks.Add(1)
	last := t.last.Load()
	switch {
	case err != nil || k <= 0 || k-last > 1_000_000:
		t.unexpected++
		s.note("session %d: unreadable tick in %.100q", c.Index, frame)
	case k == last+1:
		t.last.Store(k)
	case k > last+1:
		if t.missing == nil {
			t.missing = make(map[int64]struct{})
		}
		for j := last + 1; j < k; j++ {
			t.missing[j] = struct{}{}
		}
		t.last.Store(k)
		s.note("session %d: tick %d right after tick %d", c.Index, k, last)
	default:
		if _, ok := t.missing[k]; ok {
			delete(t.missing, k)
			t.reordered++
			s.note("session %d: tick %d after tick %d", c.Index, k, last)
		} else {
			t.dup++
			s.note("session %d: tick %d again, after tick %d", c.Index, k, last)
		}
	}
}

// waitReauth waits until every connection has had round fresh auth_oks, a
// connection closed or got an error frame, or no auth_ok came for
// stormStall.
func (s *stormState) waitReauth(ctx context.Context, pool *Pool, round int) (StormReport, error) {
	r := StormReport{Op: "reauth", Round: round, Conns: len(pool.Conns)}
	want := int64(round)
	next := 0 // connections before next are done
	var progress int64 = -1
	lastProgress := time.Now()
	for i := 0; ; i++ {
		for next < len(pool.Conns) && pool.Conns[next].Reauths.Load() >= want {
			next++
		}
		if next == len(pool.Conns) {
			break
		}
		if i%100 == 0 { // every 100 ms or so: the costlier checks
			var total, errs int64
			for _, c := range pool.Conns {
				total += c.Reauths.Load()
				errs += c.ErrorFrames.Load()
			}
			if pool.Closes() > 0 || errs > 0 {
				for _, c := range pool.Conns {
					if c.ErrorFrames.Load() > 0 || c.CloseErr() != nil {
						s.note("session %d: error frame or failed refresh (%d), closed: %v", c.Index, c.ErrorFrames.Load(), c.CloseErr())
						break
					}
				}
				break
			}
			if total != progress {
				progress, lastProgress = total, time.Now()
			} else if time.Since(lastProgress) > stormStall {
				s.note("session %d: no fresh auth_ok (%d of %d) for %v", next, pool.Conns[next].Reauths.Load(), round, stormStall)
				break
			}
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return r, err
		}
	}
	r.End = StormNow()
	for _, c := range pool.Conns {
		if c.Reauths.Load() >= want {
			r.Reauthed++
		}
	}
	s.counts(pool, &r)
	return r, nil
}

// waitDrain waits until connection i has received every tick up to
// sent[i], or no tick came for stormStall, and counts the ticks lost,
// duplicated, reordered and never sent, over all rounds.
func (s *stormState) waitDrain(ctx context.Context, pool *Pool, round int, sent []int64) (StormReport, error) {
	r := StormReport{Op: "drain", Round: round, Conns: len(pool.Conns)}
	next := 0
	progress := s.ticks.Load()
	lastProgress := time.Now()
	for {
		for next < len(sent) && s.sess[next].last.Load() >= sent[next] {
			next++
		}
		if next == len(sent) || pool.Closes() > 0 {
			break
		}
		if p := s.ticks.Load(); p != progress {
			progress, lastProgress = p, time.Now()
		} else if time.Since(lastProgress) > stormStall {
			break
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return r, err
		}
	}
	r.End = StormNow()
	for i := range s.sess {
		t := &s.sess[i]
		t.mu.Lock()
		last := t.last.Load()
		r.Ticks += last
		lost := int64(len(t.missing)) + max(sent[i]-last, 0)
		if lost > 0 {
			s.note("session %d: %d ticks lost, got up to tick %d of %d", i, lost, last, sent[i])
		}
		r.Lost += lost
		r.Dup += t.dup
		r.Reordered += t.reordered
		r.Unexpected += t.unexpected + max(last-sent[i], 0)
		t.mu.Unlock()
	}
	s.counts(pool, &r)
	return r, nil
}

// counts adds the closes, error frames and first problem to r.
func (s *stormState) counts(pool *Pool, r *StormReport) {
	r.Closes = pool.Closes()
	for _, c := range pool.Conns {
		r.ErrorFrames += c.ErrorFrames.Load()
	}
	s.detailMu.Lock()
	r.Detail = s.detail
	s.detailMu.Unlock()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
