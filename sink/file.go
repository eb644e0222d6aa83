package sink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"siem-recovery/recovery"
)

// writerSink writes one line per activity to stdout or a file.
type writerSink struct {
	mu   sync.Mutex
	name string
	w    *bufio.Writer
	file *os.File // synced after each batch; nil if the writer is no file
	own  bool     // close file on Close
	enc  *encoder
}

func newWriterSink(name string, w io.Writer, own *os.File, enc *encoder) *writerSink {
	s := &writerSink{name: name, w: bufio.NewWriterSize(w, 64<<10), enc: enc}
	if own != nil {
		s.file, s.own = own, true
	} else if f, ok := w.(*os.File); ok {
		s.file = f
	}
	return s
}

// Send writes the batch, flushes it and fsyncs the file, so the batch is on
// disk when it returns.
func (s *writerSink) Send(ctx context.Context, batch []recovery.Activity) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("write to %s: %w", s.name, err)
	}
	for _, a := range batch {
		if _, err := s.w.Write(s.enc.appendFrame(s.w.AvailableBuffer(), a)); err != nil {
			return 0, fmt.Errorf("write to %s: %w", s.name, err)
		}
	}
	if err := s.w.Flush(); err != nil {
		return 0, fmt.Errorf("write to %s: %w", s.name, err)
	}
	if s.file != nil {
		// A pipe, FIFO or terminal cannot be synced, and need not be.
		if err := s.file.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
			return 0, fmt.Errorf("sync %s: %w", s.name, err)
		}
	}
	return 0, nil
}

// Close flushes what is buffered (nothing, after a successful Send) and
// closes the file; it never closes stdout.
func (s *writerSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.w.Flush()
	if s.own {
		err = errors.Join(err, s.file.Close())
	}
	return err
}

// endTornLine ends with a newline a file whose last line was cut short (a
// run killed in the middle of a write), so that the next event starts a
// line of its own instead of gluing onto the fragment, which a SIEM would
// drop with it. The fragment's activity is in the batch the next run sends
// again, since the checkpoint never passed it.
func endTornLine(f *os.File) error {
	info, err := f.Stat()
	if err != nil || info.Size() == 0 || !info.Mode().IsRegular() {
		return err
	}
	r, err := os.Open(f.Name())
	if err != nil {
		return err
	}
	defer r.Close()
	last := make([]byte, 1)
	if _, err := r.ReadAt(last, info.Size()-1); err != nil {
		return fmt.Errorf("read the end of %s: %w", f.Name(), err)
	}
	if last[0] == '\n' {
		return nil
	}
	if _, err := f.Write([]byte{'\n'}); err != nil {
		return fmt.Errorf("end the torn last line of %s: %w", f.Name(), err)
	}
	return f.Sync()
}
