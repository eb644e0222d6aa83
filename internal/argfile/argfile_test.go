package argfile

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadRegularFileUpToTheCap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "filter.json")
	if err := os.WriteFile(path, []byte(`{"service":{"eq":[1]}}`), 0o640); err != nil {
		t.Fatal(err)
	}
	data, info, err := Read(context.Background(), path, 22)
	if err != nil || string(data) != `{"service":{"eq":[1]}}` || info.Mode().Perm() != 0o640 {
		t.Fatalf("Read at exactly the cap: %q, %v, %v", data, info, err)
	}
	_, _, err = Read(context.Background(), path, 21)
	var tooLarge *TooLargeError
	if !errors.As(err, &tooLarge) || tooLarge.Path != path || tooLarge.Limit != 21 || err.Error() != path+" is larger than 21 bytes" {
		t.Fatalf("Read over the cap: %v", err)
	}
}

// An endless device fails at the cap, having read no more than it.
func TestEndlessDeviceStopsAtTheCap(t *testing.T) {
	for _, dev := range []string{"/dev/zero", "/dev/urandom"} {
		if _, err := os.Stat(dev); err != nil {
			t.Skip(err)
		}
		f, err := Open(context.Background(), dev, SmallLimit)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, err = buf.ReadFrom(f)
		f.Close()
		var tooLarge *TooLargeError
		if !errors.As(err, &tooLarge) || err.Error() != dev+" is larger than 1 MiB" {
			t.Fatalf("%s: %v", dev, err)
		}
		if buf.Len() > SmallLimit+1 {
			t.Fatalf("%s: read %d bytes for a cap of %d", dev, buf.Len(), SmallLimit)
		}
	}
}

func TestDirectoryIsAnError(t *testing.T) {
	dir := t.TempDir()
	_, _, err := Read(context.Background(), dir, SmallLimit)
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("Read of a directory: %v", err)
	}
}

func mkfifo(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := makeFIFO(path); err != nil {
		t.Skip("no named pipes here:", err)
	}
	return path
}

// A named pipe is read once, as a stream: what its writer writes is what
// Read returns.
func TestNamedPipeIsReadOnce(t *testing.T) {
	path := mkfifo(t)
	go func() {
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		w.WriteString("the-token\n")
		w.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	data, info, err := Read(ctx, path, SmallLimit)
	if err != nil || string(data) != "the-token\n" || info.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("Read of a pipe: %q, %v, %v", data, info, err)
	}
}

// A pipe whose writer never comes blocks in open(2); the caller's context
// still ends the wait, and a later writer does not block on a reader that
// is gone.
func TestNamedPipeWithoutWriterGivesWayToTheContext(t *testing.T) {
	path := mkfifo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := Read(ctx, path, SmallLimit)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Read of a pipe without a writer: %v", err)
	}
}

// A writer that opens the pipe and then says nothing blocks the read; the
// context ends that wait too.
func TestSilentWriterGivesWayToTheContext(t *testing.T) {
	path := mkfifo(t)
	opened := make(chan *os.File, 1)
	go func() {
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err == nil {
			opened <- w
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	f, err := Open(ctx, path, SmallLimit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := <-opened
	defer w.Close()
	if _, err := w.WriteString("part"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if n, err := f.Read(buf); n != 4 || err != nil {
		t.Fatalf("first read: %d, %v", n, err)
	}
	go cancel() // the next read waits for the writer until this
	_, err = f.Read(buf)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
}

// A pipe that never ends fails at the cap.
func TestEndlessPipeStopsAtTheCap(t *testing.T) {
	path := mkfifo(t)
	go func() {
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer w.Close()
		line := []byte(strings.Repeat("y", 1023) + "\n")
		for {
			if _, err := w.Write(line); err != nil {
				return // the reader gave up: broken pipe
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _, err := Read(ctx, path, 64<<10)
	var tooLarge *TooLargeError
	if !errors.As(err, &tooLarge) || tooLarge.Limit != 64<<10 {
		t.Fatalf("Read of an endless pipe: %v", err)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{1 << 20: "1 MiB", 2 << 30: "2 GiB", 1536: "1536 bytes", 4096: "4 KiB", 7: "7 bytes"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestOpenRegularRefusesWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "export.jsonl")
	if err := os.WriteFile(file, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, info, err := OpenRegular(file)
	if err != nil || info.Size() != 3 {
		t.Fatalf("OpenRegular of a file: %v, %v", info, err)
	}
	f.Close()
	cases := map[string]string{dir: "a directory"}
	if _, err := os.Stat("/dev/null"); err == nil {
		cases["/dev/null"] = "a device"
	}
	if fifo := filepath.Join(dir, "fifo"); makeFIFO(fifo) == nil {
		cases[fifo] = "a named pipe (FIFO)" // with no writer: an open that waited would hang here
	}
	for path, kind := range cases {
		_, _, err := OpenRegular(path)
		var notRegular *NotRegularError
		if !errors.As(err, &notRegular) || err.Error() != path+" is "+kind+", not a regular file" {
			t.Errorf("OpenRegular(%s): %v", path, err)
		}
	}
}
