//go:build !unix

package argfile

import "os"

// wakeOpen has nothing to do where opening a pipe does not wait for its
// writer (on Windows a pipe client's open fails at once without a server).
func wakeOpen(string) {}

// openNoWait opens path for reading; no open waits here.
func openNoWait(path string) (*os.File, error) { return os.Open(path) }
