//go:build unix

package argfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// wakeOpen releases an open(2) of the named pipe at path that waits for a
// writer: it opens the pipe for writing without blocking and closes it, so
// the reader sees an empty stream. Nothing is written.
func wakeOpen(path string) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
}

// openNoWait opens path for reading without waiting for a named pipe's
// writer (O_NONBLOCK, which changes nothing for a regular file's reads).
func openNoWait(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
}
