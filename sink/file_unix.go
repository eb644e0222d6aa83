//go:build unix

package sink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// appendFlags open the sink's file for appending, created 0600, never
// through a symbolic link at the path (O_NOFOLLOW: a link planted there
// after a crash must not make the run append to a file of the link's
// choosing).
const appendFlags = os.O_WRONLY | os.O_APPEND | os.O_CREATE | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openAppend opens path with appendFlags. A named pipe with no reader
// would block open(2) for as long as none comes, deaf to signals: it is
// opened without waiting first (ENXIO then says no reader is there), and
// else waited for aside (waiting is told first), until ctx ends or stop is
// closed (errNoReader).
func openAppend(ctx context.Context, stop <-chan struct{}, path string, waiting func()) (*os.File, error) {
	f, err := os.OpenFile(path, appendFlags|unix.O_NONBLOCK, 0o600)
	switch {
	case errors.Is(err, unix.ENXIO):
		waiting()
		return awaitReader(ctx, stop, path)
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EMLINK): // EMLINK: FreeBSD's O_NOFOLLOW
		return nil, asLink(path, err)
	}
	return f, err
}

// awaitReader opens the named pipe at path for writing once a reader has
// it open, or returns errNoReader when ctx ends or stop is closed first.
// The open left waiting is then released by a reader of our own, and what
// it opened closed.
func awaitReader(ctx context.Context, stop <-chan struct{}, path string) (*os.File, error) {
	type opened struct {
		f   *os.File
		err error
	}
	done := make(chan opened, 1)
	go func() {
		f, err := os.OpenFile(path, appendFlags, 0o600)
		done <- opened{f, err}
	}()
	select {
	case o := <-done:
		return o.f, o.err
	case <-ctx.Done():
	case <-stop:
	}
	r, rerr := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	go func() {
		if o := <-done; o.f != nil {
			o.f.Close()
		}
		if rerr == nil {
			r.Close()
		}
	}()
	return nil, errNoReader
}

// openRead opens path for reading, never through a symbolic link.
func openRead(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
}

// openWrite opens the existing file at path for writing (to cut it),
// never through a symbolic link.
func openWrite(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
}

// fileIdentity names the file f is open on, for as long as it exists:
// its device and inode.
func fileIdentity(f *os.File) (string, error) {
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return "", nil
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}

// fileLinks is how many names the file f is open on has: 0 once it was
// removed.
func fileLinks(f *os.File) (uint64, error) {
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink), nil
	}
	return 1, nil
}

// infoIdentity is fileIdentity's name for the file info describes.
func infoIdentity(info os.FileInfo) string {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	}
	return ""
}
