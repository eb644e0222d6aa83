package sink

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
func (s *writerSink) Send(ctx context.Context, b recovery.Batch) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return 0, s.send(ctx, b.Activities)
}

func (s *writerSink) send(ctx context.Context, batch []recovery.Activity) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write to %s: %w", s.name, err)
	}
	for _, a := range batch {
		if _, err := s.w.Write(s.enc.appendFrame(s.w.AvailableBuffer(), a)); err != nil {
			return fmt.Errorf("write to %s: %w", s.name, err)
		}
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("write to %s: %w", s.name, err)
	}
	return s.sync()
}

// sync makes what was written durable. A pipe, FIFO or terminal cannot be
// synced, and need not be.
func (s *writerSink) sync() error {
	if s.file == nil {
		return nil
	}
	if err := s.file.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("sync %s: %w", s.name, err)
	}
	return nil
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

// fileSink appends to a file, and is the one sink that can read back what
// it delivered: with the FileMark taken before a batch, a run after a
// crash finds which activities of that batch are already in the file, in
// whole lines, and removes the torn line the crash left.
type fileSink struct {
	*writerSink
	log *slog.Logger
	// tailChecked: the file is known to end with a whole line (or to be
	// empty), so that the next line starts a line of its own.
	tailChecked bool
}

// fileMark is where a batch starts in a file sink's file: which file (its
// identity on this machine) and its size before the batch. It is the
// recovery.Resumer mark the checkpoint keeps while the batch is in flight.
type fileMark struct {
	File string `json:"file"`
	Size int64  `json:"size"`
}

func newFileSink(f *os.File, enc *encoder, log *slog.Logger) *fileSink {
	return &fileSink{writerSink: newWriterSink(f.Name(), f, f, enc), log: log}
}

// Send writes the batch after a line end if the file needs one (see
// endForeignLine), then as writerSink.Send does.
func (s *fileSink) Send(ctx context.Context, b recovery.Batch) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.endForeignLine(); err != nil {
		return 0, err
	}
	return 0, s.send(ctx, b.Activities)
}

// Mark returns where the next batch will start (recovery.Resumer): the
// file's identity and size. It is nil for a file that cannot be read back
// (a FIFO, a device, or where the platform names no file).
func (s *fileSink) Mark(context.Context) (json.RawMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.endForeignLine(); err != nil {
		return nil, err
	}
	m, err := s.mark()
	if err != nil || m.File == "" {
		return nil, err
	}
	return json.Marshal(m)
}

func (s *fileSink) mark() (fileMark, error) {
	info, err := s.file.Stat()
	if err != nil {
		return fileMark{}, fmt.Errorf("stat %s: %w", s.name, err)
	}
	if !info.Mode().IsRegular() {
		return fileMark{}, nil
	}
	id, err := fileIdentity(s.file)
	if err != nil {
		return fileMark{}, fmt.Errorf("stat %s: %w", s.name, err)
	}
	return fileMark{File: id, Size: info.Size()}, nil
}

// Resume looks at what the batch that started at mark left in the file
// when the run writing it died (recovery.Resumer). The lines after mark
// that are whole are read back: their activities' ids are returned, so
// that they are not written again. A torn last line after mark, bytes of a
// line the run did not finish, is cut off: it is never completed with a
// line end, and nothing before mark, or in another file, is ever cut. The
// file is synced before Resume returns. A mark of another file (the file
// was rotated, replaced or cut shorter since) finds nothing it can tell
// (nil): the batch is written again whole.
func (s *fileSink) Resume(_ context.Context, raw json.RawMessage) (held map[string]bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var mark fileMark
	if err := json.Unmarshal(raw, &mark); err != nil {
		return nil, fmt.Errorf("the checkpoint's mark of %s: %w", s.name, err)
	}
	now, err := s.mark()
	if err != nil {
		return nil, err
	}
	if now.File == "" || now.File != mark.File || now.Size < mark.Size {
		s.log.Warn("the sink file is not the one the batch in flight was written to (rotated or replaced?); that batch is written again whole",
			"file", s.name, "size", now.Size, "batch_started_at", mark.Size)
		return nil, nil
	}
	held, lineEnd, err := s.readBack(mark.Size, now.Size)
	if err != nil {
		return nil, err
	}
	if torn := now.Size - lineEnd; torn > 0 {
		if err := s.file.Truncate(lineEnd); err != nil {
			return nil, fmt.Errorf("cut the torn last line of %s: %w", s.name, err)
		}
		s.log.Warn("removed the torn last line the previous run left in the sink file", "file", s.name, "bytes", torn)
	}
	s.tailChecked = true
	if err := s.sync(); err != nil {
		return nil, err
	}
	return held, nil
}

// readBack reads the whole lines between from and size: the ids of their
// activities, and where the last of them ends (from, if none does).
func (s *fileSink) readBack(from, size int64) (held map[string]bool, lineEnd int64, err error) {
	r, err := s.reader()
	if err != nil {
		return nil, 0, fmt.Errorf("read back %s: %w", s.name, err)
	}
	defer r.Close()
	held, lineEnd = map[string]bool{}, from
	br := bufio.NewReaderSize(io.NewSectionReader(r, from, size-from), 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			return held, lineEnd, nil // what is left is the torn line, or nothing
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read back %s: %w", s.name, err)
		}
		lineEnd += int64(len(line))
		if id, ok := s.enc.activityID(line[:len(line)-1]); ok {
			held[id] = true
		}
	}
}

// endForeignLine ends with a line end a file whose last line is not whole
// when this sink first writes to it, so that the next event starts a line
// of its own instead of gluing onto the fragment (which a SIEM would drop
// with it). The fragment is not this tool's to remove: a torn line a run
// of this tool left after its last synced batch is cut by Resume first;
// this is for a file another writer left so, or one whose checkpoint was
// made afresh.
func (s *fileSink) endForeignLine() error {
	if s.tailChecked {
		return nil
	}
	info, err := s.file.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", s.name, err)
	}
	if info.Size() == 0 || !info.Mode().IsRegular() {
		s.tailChecked = true
		return nil
	}
	r, err := s.reader()
	if err != nil {
		return fmt.Errorf("read the end of %s: %w", s.name, err)
	}
	defer r.Close()
	last := make([]byte, 1)
	if _, err := r.ReadAt(last, info.Size()-1); err != nil {
		return fmt.Errorf("read the end of %s: %w", s.name, err)
	}
	if last[0] != '\n' {
		s.log.Warn("the sink file ends in the middle of a line this run did not write; it is ended with a line end first",
			"file", s.name)
		if _, err := s.file.Write([]byte{'\n'}); err != nil {
			return fmt.Errorf("end the last line of %s: %w", s.name, err)
		}
		if err := s.sync(); err != nil {
			return err
		}
	}
	s.tailChecked = true
	return nil
}

// reader opens the sink's file for reading: its own descriptor is
// write-only. The path must still name the file the sink has open.
func (s *fileSink) reader() (*os.File, error) {
	r, err := os.Open(s.file.Name())
	if err != nil {
		return nil, err
	}
	ri, err := r.Stat()
	if err == nil {
		var wi os.FileInfo
		if wi, err = s.file.Stat(); err == nil && !os.SameFile(ri, wi) {
			err = errors.New("the path names another file than the one this run opened (rotated?)")
		}
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}
