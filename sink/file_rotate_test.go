//go:build unix

package sink

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"siem-recovery/recovery"
)

// requireLogrotate returns the logrotate binary, skipping the test where
// it is not installed (CI installs it: there a missing one fails).
func requireLogrotate(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("logrotate")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("logrotate is missing: CI must install it")
		}
		t.Skip("logrotate is not installed")
	}
	return path
}

// rotator runs the real logrotate on one file with the given directives,
// forced, with a state file of its own.
type rotator struct {
	t         *testing.T
	bin, conf string
	state     string
	times     int
}

func newRotator(t *testing.T, path string, directives ...string) *rotator {
	t.Helper()
	r := &rotator{t: t, bin: requireLogrotate(t)}
	dir := t.TempDir()
	r.conf, r.state = filepath.Join(dir, "rotate.conf"), filepath.Join(dir, "state")
	conf := path + " {\n    rotate 50\n    missingok\n    nomail\n    " + strings.Join(directives, "\n    ") + "\n}\n"
	if err := os.WriteFile(r.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rotator) rotate() {
	r.t.Helper()
	out, err := exec.Command(r.bin, "--force", "--state", r.state, r.conf).CombinedOutput()
	if err != nil || len(out) > 0 {
		r.t.Fatalf("logrotate: %v\n%s", err, out)
	}
	r.times++
}

// unionOf reads the sink file at path and every rotated file beside it
// (gzip-compressed ones decompressed) and counts each activity's id; a
// line that is no activity (a torn one) is counted apart.
func unionOf(t *testing.T, path string, enc *encoder) (counts map[string]int, torn int, files []string) {
	t.Helper()
	dir, base := filepath.Split(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	counts = map[string]int{}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), base) {
			continue
		}
		files = append(files, e.Name())
		data := readFile(t, filepath.Join(dir, e.Name()))
		if strings.HasSuffix(e.Name(), ".gz") {
			z, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			if data, err = io.ReadAll(z); err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if id, ok := enc.activityID(sc.Bytes()); ok {
				counts[id]++
			} else {
				torn++
			}
		}
	}
	return counts, torn, files
}

// wantEachOnce fails unless counts holds every activity of as once and
// nothing else, and no torn line.
func wantEachOnce(t *testing.T, as []recovery.Activity, counts map[string]int, torn int, files []string) {
	t.Helper()
	missing, twice := 0, 0
	for _, a := range as {
		switch counts[a.ID] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	if missing > 0 || twice > 0 || len(counts) != len(as) || torn > 0 {
		t.Fatalf("of %d activities, in %v: %d missing, %d twice, %d ids in all, %d torn lines; want each once",
			len(as), files, missing, twice, len(counts), torn)
	}
}

// sendMarked delivers each batch as the replay loop does: Mark, then
// Send. before runs before the mark of batch i with marked false, and
// between the two with marked true.
func sendMarked(t *testing.T, s *fileSink, batches [][]recovery.Activity, before func(i int, marked bool)) {
	t.Helper()
	ctx := context.Background()
	for i, b := range batches {
		if before != nil {
			before(i, false)
		}
		if _, err := s.Mark(ctx); err != nil {
			t.Fatal(err)
		}
		if before != nil {
			before(i, true)
		}
		if _, err := s.Send(ctx, recovery.Batch{Activities: b}); err != nil {
			t.Fatal(err)
		}
	}
}

func split(as []recovery.Activity, n int) [][]recovery.Activity {
	var out [][]recovery.Activity
	for len(as) > 0 {
		k := min(n, len(as))
		out = append(out, as[:k])
		as = as[k:]
	}
	return out
}

// TestFileSinkFollowsLogrotate rotates the sink's file with the real
// logrotate while batches are written: between two batches, between a
// batch's mark and its writing, and in the middle of a batch (after its
// first chunk reached the file). A descriptor kept for ever wrote into the
// renamed file, which compress then removed (create+compress lost most of
// a run), or past the end of a truncated one. Whatever the rotation, the
// union of the path's files holds each activity once, in whole lines.
func TestFileSinkFollowsLogrotate(t *testing.T) {
	as := makeActivities(12_000)
	batches := split(as, 1500) // each a few chunks
	for _, directives := range [][]string{
		{"create", "compress"},
		{"create", "compress", "delaycompress"},
		{"create"},
		{"nocreate", "compress"},
		{"copytruncate"},
		{"copytruncate", "compress"},
	} {
		t.Run(strings.Join(directives, "+"), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.log")
			opts := fileOptions(t, FormatCEF, "")
			var logged logRecorder
			opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
			s := openFile(t, path, opts)
			r := newRotator(t, path, directives...)
			batch, rotatedIn := 0, -1
			s.midBatch = func(chunk int) {
				// Once in the batch: its repair is written in chunks too.
				if (batch == 3 || batch == 6) && chunk == 0 && rotatedIn != batch {
					rotatedIn = batch
					r.rotate()
				}
			}
			sendMarked(t, s, batches, func(i int, marked bool) {
				batch = i
				if i == 1 && !marked || i == 4 && !marked || // between two batches
					i == 2 && marked || i == 7 && marked { // between the mark and the batch
					r.rotate()
				}
			})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			counts, torn, files := unionOf(t, path, s.enc)
			t.Logf("%d rotations, files %v", r.times, files)
			wantEachOnce(t, as, counts, torn, files)
			if !strings.Contains(strings.Join(logged.lines(), ""), "the sink file was") {
				t.Errorf("no rotation was logged:\n%s", strings.Join(logged.lines(), ""))
			}
		})
	}
}

// TestFileSinkRepairsWhatARotationTook plays the rotations that race a
// batch's writes, which logrotate makes only now and then: the copy of
// copytruncate read before a chunk, the truncation after it (the chunk is
// in neither file); a compressor that read the renamed file to its end
// before the batch's last chunks and removes it after the batch is synced.
// What the rotated files lack is written to the new file.
func TestFileSinkRepairsWhatARotationTook(t *testing.T) {
	as := makeActivities(4000)
	batches := split(as, 2000)
	copyFile := func(t *testing.T, from, to string) {
		if err := os.WriteFile(to, readFile(t, from), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	gzipFile := func(t *testing.T, from, to string) {
		var b bytes.Buffer
		z := gzip.NewWriter(&b)
		z.Write(readFile(t, from))
		z.Close()
		if err := os.WriteFile(to, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		// during runs after chunk n of the second batch; compressing,
		// when set, is told the sink waits for a compressor.
		during func(t *testing.T, path string, chunk int)
		after  func(t *testing.T, path string)
	}{
		{"copytruncate: copied before a chunk, truncated after it", func(t *testing.T, path string, chunk int) {
			switch chunk {
			case 0:
				copyFile(t, path, path+".1")
			case 1:
				if err := os.Truncate(path, 0); err != nil {
					t.Fatal(err)
				}
			}
		}, nil},
		{"copytruncate: truncated after the batch was synced", func(t *testing.T, path string, chunk int) {
			if chunk == 0 {
				copyFile(t, path, path+".1")
			}
		}, func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"compress: read before the last chunks, removed once the batch was synced", func(t *testing.T, path string, chunk int) {
			if chunk == 0 {
				if err := os.Rename(path, path+".1"); err != nil {
					t.Fatal(err)
				}
				gzipFile(t, path+".1", path+".1.gz")
			}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.log")
			opts := fileOptions(t, FormatCEF, "")
			waiting := make(chan struct{})
			var once sync.Once
			opts.Logger = slog.New(slog.NewTextHandler(signalOn{"waiting for the compressor", func() { once.Do(func() { close(waiting) }) }}, nil))
			s := openFile(t, path, opts)
			batch, writes := 0, 0
			s.midBatch = func(chunk int) {
				if chunk == 0 {
					writes++
				}
				if batch == 1 && writes == 2 { // the second batch's own writing, not its repair
					tc.during(t, path, chunk)
				}
			}
			// The compressor removes the file it read once the sink waits for it.
			removed := make(chan struct{})
			go func() {
				defer close(removed)
				select {
				case <-waiting:
					os.Remove(path + ".1")
				case <-t.Context().Done():
				}
			}()
			sendMarked(t, s, batches[:1], nil)
			batch = 1
			sendMarked(t, s, batches[1:], nil)
			if tc.after != nil {
				tc.after(t, path)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			counts, torn, files := unionOf(t, path, s.enc)
			wantEachOnce(t, as, counts, torn, files)
		})
	}
}

// signalOn is a log writer that calls fn when a line holds text.
type signalOn struct {
	text string
	fn   func()
}

func (w signalOn) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(w.text)) {
		w.fn()
	}
	return len(p), nil
}

// TestFileResumeAfterRotation: a run killed in the middle of a batch, and
// the file rotated by logrotate before the next run. The mark of the batch
// names a file that is now a rotated sibling (renamed, compressed, or the
// truncated original with its copy beside it): the batch is read back from
// there instead of being written again whole (each of its activities then
// twice), and the run goes on in the new file.
func TestFileResumeAfterRotation(t *testing.T) {
	as := makeActivities(60)
	before, batch := as[:20], as[20:]
	const whole = 25
	for _, directives := range [][]string{
		{"create"},
		{"create", "compress"},
		{"copytruncate"},
		{"copytruncate", "compress"},
	} {
		t.Run(strings.Join(directives, "+"), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.log")
			opts := fileOptions(t, FormatCEF, "")
			s := openFile(t, path, opts)
			sendMarked(t, s, [][]recovery.Activity{before}, nil)
			mark, err := s.Mark(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			// The dead run's writes: whole lines, then a part of the next.
			written := fileBytes(t, opts, batch[:whole])
			next := fileBytes(t, opts, batch[whole:whole+1])
			appendTo(t, path, append(written, next[:40]...)) // before its externalId
			newRotator(t, path, directives...).rotate()

			s = openFile(t, path, opts)
			held, err := s.Resume(context.Background(), mark)
			if err != nil {
				t.Fatal(err)
			}
			if len(held) != whole {
				t.Fatalf("read back %d activities of the batch, want the %d whole lines'", len(held), whole)
			}
			var rest []recovery.Activity
			for _, a := range batch {
				if !held[a.ID] {
					rest = append(rest, a)
				}
			}
			if _, err := s.Send(context.Background(), recovery.Batch{Activities: rest}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			counts, torn, files := unionOf(t, path, s.enc)
			// The torn line is cut where the file is the dead run's own,
			// renamed; a compressed or copied one keeps it.
			wantTorn := 1
			if directives[0] == "create" && len(directives) == 1 {
				wantTorn = 0
			}
			if torn != wantTorn {
				t.Errorf("%d torn lines in %v, want %d", torn, files, wantTorn)
			}
			wantEachOnce(t, as, counts, 0, files)
		})
	}
}

// A symbolic link planted at the sink's path (after a crash, or between
// two rotations) made the run append to the link's target, /etc included.
// The path is opened without following a link: a link is refused, as the
// sink opens and when it follows a rotation, and its target is untouched.
func TestFileSinkRefusesALink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim.conf")
	if err := os.WriteFile(victim, []byte("important\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "out.log")
	opts := fileOptions(t, FormatCEF, "")
	wantLink := func(t *testing.T, err error) {
		t.Helper()
		want := `--sink "file:` + path + `": ` + path + " is a symbolic link (to " + victim + "); give --sink the path of the file itself"
		if !errors.Is(err, recovery.ErrUsage) || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want the usage error %q", err, want)
		}
		if got := string(readFile(t, victim)); got != "important\n" {
			t.Fatalf("the sink wrote through the link: %q", got)
		}
	}

	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), "file:"+path, opts)
	wantLink(t, err)

	// Planted where a rotation leaves the path free.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	s := openFile(t, path, opts)
	defer s.Close()
	sendMarked(t, s, [][]recovery.Activity{makeActivities(3)}, nil)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	_, err = s.Mark(context.Background())
	wantLink(t, err)
	_, err = s.Send(context.Background(), recovery.Batch{Activities: makeActivities(3)})
	wantLink(t, err)
}

// Opening a named pipe for writing waits for its reader, in open(2), deaf
// to signals: a FIFO sink nobody read made SIGTERM do nothing. The wait
// now ends when the run stops (Options.Stop) or its ctx ends, with a
// planned stop's error naming the pipe; a reader that comes lets it
// through.
func TestFileSinkFIFOWaitEndsWithTheRun(t *testing.T) {
	for _, how := range []string{"stop", "ctx"} {
		t.Run(how, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "siem.fifo")
			if err := mkfifo(path); err != nil {
				t.Skip("no FIFO here:", err)
			}
			opts := fileOptions(t, FormatCEF, "")
			stop := make(chan struct{})
			opts.Stop = stop
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			opened := make(chan error, 1)
			go func() {
				_, err := Open(ctx, "file:"+path, opts)
				opened <- err
			}()
			if how == "stop" {
				close(stop)
			} else {
				cancel()
			}
			err := <-opened
			want := `--sink "file:` + path + `": stopped while waiting for a reader of the named pipe ` + path
			if !errors.Is(err, recovery.ErrStopped) || !strings.Contains(err.Error(), want) {
				t.Fatalf("got %v, want the stop %q", err, want)
			}
		})
	}
	t.Run("a reader comes", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "siem.fifo")
		if err := mkfifo(path); err != nil {
			t.Skip("no FIFO here:", err)
		}
		got := make(chan []byte, 1)
		opened := make(chan struct{})
		go func() {
			<-opened // the sink waits (or is about to): a reader comes
			f, err := os.Open(path)
			if err != nil {
				got <- nil
				return
			}
			b, _ := io.ReadAll(f)
			f.Close()
			got <- b
		}()
		opts := fileOptions(t, FormatCEF, "")
		close(opened)
		s, err := Open(context.Background(), "file:"+path, opts)
		if err != nil {
			t.Fatal(err)
		}
		as := makeActivities(2)
		if _, err := s.Send(context.Background(), recovery.Batch{Activities: as}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if b, want := <-got, fileBytes(t, opts, as); !bytes.Equal(b, want) {
			t.Fatalf("the reader got %q, want %q", b, want)
		}
	})
}

// A file removed and created anew in the middle of every write (a
// rotation forced in a loop) would have the batch repaired for ever: the
// sink gives up after a few repairs, with an error that ends the run (the
// batch stays in flight, for the next run to read back).
func TestFileSinkGivesUpOnRotationsWithoutEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.log")
	s := openFile(t, path, fileOptions(t, FormatCEF, ""))
	defer s.Close()
	s.midBatch = func(chunk int) {
		if chunk == 0 {
			os.Remove(path)
			appendTo(t, path, nil)
		}
	}
	_, err := s.Send(context.Background(), recovery.Batch{Activities: makeActivities(2000)})
	if want := "write to " + path + ": the file was rotated 4 times during one batch"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}
