package loadgen

import (
	"io"
	"os"
	"os/exec"
)

// startChild starts cmd, a child process of a phase that puts its clients
// in another process (MeasureIdle, StartStorm), with env ("NAME=value")
// added to its environment, stderr going to stderr, and pipes to its stdin
// and stdout.
func startChild(cmd *exec.Cmd, env string, stderr io.Writer) (io.WriteCloser, io.ReadCloser, error) {
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	return stdin, stdout, nil
}
