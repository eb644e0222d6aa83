// Package argfile reads the files a command line names (the alert, the
// filter, the token, id lists, TLS certificates) so that no such file can
// hang or swamp a run: each is opened once and read as a stream, so a named
// pipe (--token-file <(vault read ...)) or /dev/stdin works; every file has
// a cap, so /dev/zero or an endless pipe fails fast instead of growing to
// gigabytes; and a pipe with no writer, which blocks in open(2), gives way
// to the caller's context.
package argfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// SmallLimit is the cap for a file that holds one small document: an alert,
// a filter, a token, a PEM certificate bundle. Real ones are a few KiB.
const SmallLimit = 1 << 20

// TooLargeError reports a file with more than Limit bytes.
type TooLargeError struct {
	Path  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %s", e.Path, Size(e.Limit))
}

// Size writes n bytes as a person would say it: 1 MiB, 2 GiB, 300 bytes.
func Size(n int64) string {
	for _, u := range []struct {
		name  string
		bytes int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.bytes && n%u.bytes == 0 {
			return fmt.Sprintf("%d %s", n/u.bytes, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

// File is an argument file open for one read through, capped.
type File struct {
	f     *os.File
	info  fs.FileInfo
	ctx   context.Context
	stop  func() bool
	path  string
	limit int64
	read  int64
}

// Open opens path for reading once, as a stream, with at most limit bytes
// to be read from it. A regular file larger than limit fails at once with
// a *TooLargeError; anything else (a pipe, a device) fails so when a read
// goes past limit. Opening a named pipe waits for its writer, but no
// longer than ctx lasts; reads of a pipe give way to ctx too.
func Open(ctx context.Context, path string, limit int64) (*File, error) {
	f, err := open(ctx, path)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if info.Mode().IsRegular() && info.Size() > limit {
		f.Close()
		return nil, &TooLargeError{Path: path, Limit: limit}
	}
	af := &File{f: f, info: info, ctx: ctx, path: path, limit: limit, stop: func() bool { return false }}
	if info.Mode().IsRegular() {
		// A regular file never blocks for long: it is read whole even
		// when ctx is done, as if it had been read before.
		af.ctx = context.Background()
		return af, nil
	}
	// A read blocked on a pipe wakes when its deadline passes.
	af.stop = context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	return af, nil
}

// open opens path for reading. A regular file, a directory or a device
// opens at once; a named pipe blocks until a writer opens it, so that
// open runs aside and the caller returns when ctx ends.
func open(ctx context.Context, path string) (*os.File, error) {
	if info, err := os.Stat(path); err != nil || info.Mode()&fs.ModeNamedPipe == 0 {
		return os.Open(path)
	}
	type opened struct {
		f   *os.File
		err error
	}
	done := make(chan opened, 1)
	go func() {
		f, err := os.Open(path)
		done <- opened{f, err}
	}()
	select {
	case o := <-done:
		return o.f, o.err
	case <-ctx.Done():
		wakeOpen(path)
		go func() {
			if o := <-done; o.f != nil {
				o.f.Close()
			}
		}()
		return nil, &fs.PathError{Op: "open", Path: path, Err: context.Cause(ctx)}
	}
}

// Read reads up to len(p) bytes. Past the cap it fails with a
// *TooLargeError; once ctx is done, with its error.
func (f *File) Read(p []byte) (int, error) {
	if err := f.ctx.Err(); err != nil {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: context.Cause(f.ctx)}
	}
	if f.read > f.limit {
		return 0, &TooLargeError{Path: f.path, Limit: f.limit}
	}
	// One byte past the cap tells a file of exactly limit bytes from a
	// larger one.
	if rest := f.limit + 1 - f.read; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := f.f.Read(p)
	f.read += int64(n)
	if f.read > f.limit {
		return n, &TooLargeError{Path: f.path, Limit: f.limit}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && f.ctx.Err() != nil {
		err = &fs.PathError{Op: "read", Path: f.path, Err: context.Cause(f.ctx)}
	}
	return n, err
}

// Stat describes the file as opened: the one read, not whatever the path
// names by now.
func (f *File) Stat() fs.FileInfo { return f.info }

// Close closes the file.
func (f *File) Close() error {
	f.stop()
	return f.f.Close()
}

// Read returns the whole content of path, at most limit bytes (see Open),
// and what the file was as opened.
func Read(ctx context.Context, path string, limit int64) ([]byte, fs.FileInfo, error) {
	f, err := Open(ctx, path, limit)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, err
	}
	return data, f.Stat(), nil
}
