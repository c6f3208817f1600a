//go:build !unix

package loadgen

import "errors"

// RaiseFileLimit is only implemented on Unix.
func RaiseFileLimit(uint64) (uint64, error) {
	return 0, errors.New("loadgen: RaiseFileLimit needs a Unix system")
}
