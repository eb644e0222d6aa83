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
	"time"

	"siem-recovery/recovery"
)

// writerSink writes one line per activity to stdout.
type writerSink struct {
	mu   sync.Mutex
	name string
	w    *bufio.Writer
	file *os.File // synced after each batch; nil if the writer is no file
	enc  *encoder
}

func newWriterSink(name string, w io.Writer, enc *encoder) *writerSink {
	s := &writerSink{name: name, w: bufio.NewWriterSize(w, 64<<10), enc: enc}
	if f, ok := w.(*os.File); ok {
		s.file = f
	}
	return s
}

// Send writes the batch, flushes it and fsyncs the file, so the batch is on
// disk when it returns.
func (s *writerSink) Send(ctx context.Context, b recovery.Batch) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("write to %s: %w", s.name, err)
	}
	for _, a := range b.Activities {
		if _, err := s.w.Write(s.enc.appendFrame(s.w.AvailableBuffer(), a)); err != nil {
			return 0, fmt.Errorf("write to %s: %w", s.name, err)
		}
	}
	if err := s.w.Flush(); err != nil {
		return 0, fmt.Errorf("write to %s: %w", s.name, err)
	}
	return 0, syncFile(s.file, s.name)
}

// syncFile makes what was written to f durable. A pipe, FIFO or terminal
// cannot be synced, and need not be.
func syncFile(f *os.File, name string) error {
	if f == nil {
		return nil
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	return nil
}

// Close flushes what is buffered (nothing, after a successful Send); it
// never closes stdout.
func (s *writerSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Flush()
}

// fileSink appends to a file, and is the one sink that can read back what
// it delivered: with the FileMark taken before a batch, a run after a
// crash finds which activities of that batch are already in the file, in
// whole lines, and removes the torn line the crash left.
//
// It writes through a descriptor, and a file rotated under it (renamed,
// removed, or truncated by logrotate's copytruncate) would take the lines
// written after with it: before each batch it looks at what its path names
// now and follows the rotation to the new file, and after each batch it
// makes sure the batch is in the rotated files or the new one, each
// activity once (see file_rotate.go).
type fileSink struct {
	mu      sync.Mutex
	target  string   // the --sink value, for messages
	path    string   // the file's path, as given
	file    *os.File // written through (write-only, appending)
	rd      *os.File // the same file, to read back; nil unless regular
	regular bool     // a regular file: read back, marked, followed when rotated
	enc     *encoder
	log     *slog.Logger
	stop    <-chan struct{} // a planned stop: the wait for a pipe's reader ends
	frames  frames          // the batch, formatted a chunk of whole lines at a time
	now     func() time.Time

	// tailChecked: the file is known to end with a whole line (or to be
	// empty), so that the next line starts a line of its own.
	tailChecked bool
	// end is the file's size when the sink last wrote to it or looked at
	// it: a file found shorter was truncated under the run.
	end int64
	// marked: Mark (or Resume) looked at the path for the batch Send is
	// about to write, and the checkpoint holds where it starts; Send writes
	// it there, whatever happens to the path meanwhile.
	marked bool
	// last is the batch written last, until a later look finds it safe: a
	// rotation that began before its last write may yet take part of it.
	last *writtenBatch
	// before holds the siblings (identity, time modified) there were when
	// the sink began writing the file as it is: opened, or found
	// truncated. Another one, a copy of the file, may be one a truncation
	// follows (see pendingCopy).
	before map[string]time.Time
	// midBatch, when set (tests), runs after each chunk of a batch is
	// written but the last, with the chunk's number from 0: where a
	// rotation costs the most.
	midBatch func(chunk int)
}

// fileMark is where a batch starts in a file sink's file: which file (its
// identity on this machine), its size before the batch, and when the batch
// began (Unix nanoseconds; 0 in checkpoints of earlier versions). It is the
// recovery.Resumer mark the checkpoint keeps while the batch is in flight.
type fileMark struct {
	File string `json:"file"`
	Size int64  `json:"size"`
	Time int64  `json:"time,omitempty"`
}

// openFileSink opens the file sink of target, whose path is path: for
// appending, created with mode 0600 if it does not exist, never through a
// symbolic link, and waiting for a named pipe's reader no longer than ctx
// and opts.Stop last.
func openFileSink(ctx context.Context, target, path string, enc *encoder, opts Options) (*fileSink, error) {
	s := &fileSink{target: target, path: path, enc: enc, log: opts.Logger, stop: opts.Stop, now: time.Now}
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// open opens the sink's path (see openAppend) and makes it the file the
// sink writes to; a regular file is opened a second time, for reading,
// so that the sink reads back its own file whatever the path names later.
// A path that names another file between the two opens (a rotation just
// then) is opened again.
func (s *fileSink) open(ctx context.Context) error {
	for try := 0; ; try++ {
		f, err := openAppend(ctx, s.stop, s.path, func() {
			s.log.Info("waiting for a reader of the named pipe: nothing is sent until one opens it", "pipe", s.path)
		})
		if err != nil {
			return openProblem(s.target, s.path, err)
		}
		info, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("stat %s: %w", s.path, err)
		}
		var rd *os.File
		if info.Mode().IsRegular() {
			if rd, err = openRead(s.path); err == nil {
				if ri, serr := rd.Stat(); serr != nil || !os.SameFile(ri, info) {
					rd.Close()
					rd, err = nil, errors.New("the path names another file than the one just opened (rotated?)")
				}
			}
			if err != nil {
				f.Close()
				if try < 3 {
					continue
				}
				return fmt.Errorf("open %s: %w", s.path, err)
			}
		}
		s.file, s.rd, s.regular, s.end, s.tailChecked = f, rd, rd != nil, info.Size(), false
		if s.regular {
			s.newGeneration()
		}
		return nil
	}
}

// openProblem words the failure to open the sink's file.
func openProblem(target, path string, err error) error {
	var link *linkError
	switch {
	case errors.As(err, &link):
		return recovery.Problemf(recovery.ErrUsage, "give --sink the path of the file itself (a run never writes through a link: it could be made to write anywhere)",
			"--sink %q: %s is a symbolic link (to %s)", target, path, link.dest)
	case errors.Is(err, errNoReader):
		return recovery.Problemf(recovery.ErrStopped, "start the program that reads the pipe first, or give --sink a regular file",
			"--sink %q: stopped while waiting for a reader of the named pipe %s", target, path)
	}
	return recovery.Problemf(recovery.ErrUsage, "check the path and its permissions",
		"--sink %q: cannot open the file: %w", target, err)
}

// linkError: the sink's path is a symbolic link.
type linkError struct{ path, dest string }

func (e *linkError) Error() string { return e.path + " is a symbolic link to " + e.dest }

// asLink returns a *linkError if path is a symbolic link, else err: what a
// refused open(O_NOFOLLOW) meant.
func asLink(path string, err error) error {
	if info, lerr := os.Lstat(path); lerr == nil && info.Mode()&os.ModeSymlink != 0 {
		dest, _ := os.Readlink(path)
		return &linkError{path: path, dest: dest}
	}
	return err
}

// errNoReader: the run stopped while waiting for a named pipe's reader.
var errNoReader = errors.New("no reader opened the named pipe")

// Send follows a rotation of the file (unless Mark just did, for this
// batch), ends a foreign torn line (see endForeignLine), then writes the
// batch, syncs it, and makes sure it is whole in the files the path's
// rotations left.
func (s *fileSink) Send(ctx context.Context, b recovery.Batch) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.marked {
		if err := s.follow(ctx); err != nil {
			return 0, err
		}
	}
	s.marked = false
	if err := s.endForeignLine(); err != nil {
		return 0, err
	}
	return 0, s.deliver(ctx, b.Activities, 0)
}

// write writes acts to the file, a chunk of whole lines at a time (a
// reader of the file, a SIEM or a compressor, sees a line cut only in the
// middle of a write), and returns how many bytes it wrote.
func (s *fileSink) write(acts []recovery.Activity) (int64, error) {
	s.frames.formatAsSent(s.enc, acts)
	defer s.frames.forget()
	var n int64
	i := 0
	for chunk := range s.frames.chunks() {
		if s.midBatch != nil && i > 0 {
			s.midBatch(i - 1)
		}
		w, err := s.file.Write(chunk)
		n += int64(w)
		if err != nil {
			return n, fmt.Errorf("write to %s: %w", s.path, err)
		}
		i++
	}
	return n, nil
}

// Mark returns where the next batch will start (recovery.Resumer): the
// file's identity and size, once a rotation of the path is followed. It is
// nil for a file that cannot be read back (a FIFO, a device, or where the
// platform names no file).
func (s *fileSink) Mark(ctx context.Context) (json.RawMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.follow(ctx); err != nil {
		return nil, err
	}
	if err := s.endForeignLine(); err != nil {
		return nil, err
	}
	m, err := s.mark()
	if err != nil || m.File == "" {
		return nil, err
	}
	s.marked = true
	m.Time = s.now().UnixNano()
	return json.Marshal(m)
}

func (s *fileSink) mark() (fileMark, error) {
	if !s.regular {
		return fileMark{}, nil
	}
	info, err := s.file.Stat()
	if err != nil {
		return fileMark{}, fmt.Errorf("stat %s: %w", s.path, err)
	}
	id, err := fileIdentity(s.file)
	if err != nil {
		return fileMark{}, fmt.Errorf("stat %s: %w", s.path, err)
	}
	return fileMark{File: id, Size: info.Size()}, nil
}

// Resume looks at what the batch that started at mark left in the file
// when the run writing it died (recovery.Resumer). The lines after mark
// that are whole are read back: their activities' ids are returned, so
// that they are not written again. A torn last line after mark, bytes of a
// line the run did not finish, is cut off: it is never completed with a
// line end, and nothing before mark, or in another file, is ever cut. The
// file is synced before Resume returns. When the file was rotated since
// (renamed, compressed, truncated), the batch is looked for in the files
// the rotation left beside the path (see resumeRotated); only when none
// can be told is the batch written again whole (nil).
func (s *fileSink) Resume(ctx context.Context, raw json.RawMessage) (held map[string]bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var mark fileMark
	if err := json.Unmarshal(raw, &mark); err != nil {
		return nil, fmt.Errorf("the checkpoint's mark of %s: %w", s.path, err)
	}
	if err := s.follow(ctx); err != nil {
		return nil, err
	}
	now, err := s.mark()
	if err != nil {
		return nil, err
	}
	if now.File == "" || now.File != mark.File || now.Size < mark.Size {
		held, err := s.resumeRotated(mark, now)
		if err != nil || held != nil {
			s.marked = err == nil
			return held, err
		}
		s.log.Warn("the sink file is not the one the batch in flight was written to, and none beside it holds that batch (rotated elsewhere, or replaced?); that batch is written again whole",
			"file", s.path, "size", now.Size, "batch_started_at", mark.Size)
		return nil, nil
	}
	held, lineEnd, err := readBack(s.enc, s.path, s.rd, mark.Size, now.Size)
	if err != nil {
		return nil, err
	}
	if err := s.cutTornLine(s.file, s.path, now.Size, lineEnd); err != nil {
		return nil, err
	}
	s.tailChecked, s.marked, s.end = true, true, lineEnd
	return held, nil
}

// cutTornLine truncates f (named path in messages) of size at lineEnd,
// the end of its last whole line after a dead run's mark, and syncs it.
func (s *fileSink) cutTornLine(f *os.File, path string, size, lineEnd int64) error {
	if torn := size - lineEnd; torn > 0 {
		if err := f.Truncate(lineEnd); err != nil {
			return fmt.Errorf("cut the torn last line of %s: %w", path, err)
		}
		s.log.Warn("removed the torn last line the previous run left in the sink file", "file", path, "bytes", torn)
	}
	return syncFile(f, path)
}

// readBack reads the whole lines between from and size of the file r
// (named path in messages): the ids of their activities, and where the
// last of them ends (from, if none does).
func readBack(enc *encoder, path string, r io.ReaderAt, from, size int64) (held map[string]bool, lineEnd int64, err error) {
	held = map[string]bool{}
	lineEnd, err = scanIDs(enc, io.NewSectionReader(r, from, size-from), from, nil, held)
	if err != nil {
		return nil, 0, fmt.Errorf("read back %s: %w", path, err)
	}
	return held, lineEnd, nil
}

// scanIDs reads whole lines from r, which starts at offset from of its
// file, and adds to held the ids of their activities (those in want, when
// want is not nil). It returns where the last whole line ends; what
// follows it is a torn line, or nothing.
func scanIDs(enc *encoder, r io.Reader, from int64, want, held map[string]bool) (lineEnd int64, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	lineEnd = from
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			return lineEnd, nil
		}
		if err != nil {
			return lineEnd, err
		}
		lineEnd += int64(len(line))
		if id, ok := enc.activityID(line[:len(line)-1]); ok && (want == nil || want[id]) {
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
		return fmt.Errorf("stat %s: %w", s.path, err)
	}
	if info.Size() == 0 || !info.Mode().IsRegular() {
		s.tailChecked = true
		return nil
	}
	last := make([]byte, 1)
	if _, err := s.rd.ReadAt(last, info.Size()-1); err != nil {
		return fmt.Errorf("read the end of %s: %w", s.path, err)
	}
	if last[0] != '\n' {
		s.log.Warn("the sink file ends in the middle of a line this run did not write; it is ended with a line end first",
			"file", s.path)
		if _, err := s.file.Write([]byte{'\n'}); err != nil {
			return fmt.Errorf("end the last line of %s: %w", s.path, err)
		}
		if err := syncFile(s.file, s.path); err != nil {
			return err
		}
	}
	s.tailChecked = true
	return nil
}

// Close closes the file, once a last look made sure the last batch was
// not taken by a rotation that began during it.
func (s *fileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.last != nil && s.last.lost() {
		err = s.repair(context.Background(), s.last, 0)
	}
	s.dropLast()
	err = errors.Join(err, s.file.Close())
	if s.rd != nil {
		s.rd.Close()
	}
	return err
}
