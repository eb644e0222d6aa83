//go:build !unix

package main

import "testing"

// The cases that hold a lock as another run or make a named pipe are Unix
// cases: elsewhere they are skipped (the lock's Windows side is built and
// vetted in CI, and documented in docs/platforms.md).

func holdLock(t *testing.T, _ string, _ int) { t.Skip("flock-held checkpoints are a Unix case") }

func mkfifo(t *testing.T, _ string) { t.Skip("named pipes are a Unix case") }
