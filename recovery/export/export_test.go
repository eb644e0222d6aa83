package export

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"siem-recovery/internal/argfile"
	"siem-recovery/recovery"
)

func writeExport(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "export.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// byDate is the scope of a window [start, end) on the activities' date.
func byDate(start, end int64) recovery.Scope {
	return recovery.Scope{Window: recovery.Window{Start: start, End: end}}
}

func act(id string, ts int64, app int) string {
	return fmt.Sprintf(`{"_id":%q,"timestamp":%d,"appId":%d,"description":"d"}`, id, ts, app)
}

// at is the position a cursor of the export's holds.
func at(t *testing.T, c recovery.Cursor) position {
	t.Helper()
	p, err := decodePosition(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// drain fetches every page, returning the ids and the pages' sizes.
func drain(t *testing.T, s *Source, cur recovery.Cursor) ([]string, []int, recovery.Cursor) {
	t.Helper()
	var ids []string
	var sizes []int
	for range 1000 {
		p, err := s.Fetch(context.Background(), cur)
		if err != nil {
			t.Fatalf("Fetch at %v: %v", cur, err)
		}
		for _, a := range p.Activities {
			ids = append(ids, a.ID)
		}
		sizes = append(sizes, len(p.Activities))
		cur = p.Next
		if p.Last {
			if p.Progress != 1 {
				t.Fatalf("last page progress %v", p.Progress)
			}
			return ids, sizes, cur
		}
	}
	t.Fatal("no last page")
	return nil, nil, cur
}

func TestWindowFilterAndPaging(t *testing.T) {
	path := writeExport(t,
		act("before", 999, 1),
		act("a", 1000, 1),
		"",
		act("b", 1500, 2),
		act("c", 1500, 1),
		act("d", 1999, 1),
		act("end", 2000, 1),
		act("e", 1600, 1)+"   ",
	)
	f, _ := recovery.ParseFilter([]byte(`{"service":{"eq":[1]}}`))
	s, err := Open(path, byDate(1000, 2000), f, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids, sizes, _ := drain(t, s, recovery.Cursor{})
	if !slices.Equal(ids, []string{"a", "c", "d", "e"}) || !slices.Equal(sizes, []int{2, 2}) {
		t.Fatalf("ids %v sizes %v", ids, sizes)
	}
}

func TestResumeFromCursor(t *testing.T) {
	var lines []string
	for i := range 10 {
		lines = append(lines, act(fmt.Sprint(i), 1000+int64(i), 1))
	}
	path := writeExport(t, lines...)
	s, _ := Open(path, byDate(0, 5000), recovery.Filter{}, 3)
	defer s.Close()
	p, err := s.Fetch(context.Background(), recovery.Cursor{})
	if err != nil || at(t, p.Next).Line != 3 || p.Next.Text != "line 3 of the export" || p.Last {
		t.Fatalf("page 1: %+v %v", p.Next, err)
	}
	ids, _, _ := drain(t, s, p.Next)
	if !slices.Equal(ids, []string{"3", "4", "5", "6", "7", "8", "9"}) {
		t.Fatalf("resumed ids %v", ids)
	}
}

func TestChangedExportRefusedOnResume(t *testing.T) {
	path := writeExport(t, act("a", 1, 1), act("b", 2, 1), act("c", 3, 1))
	s, _ := Open(path, byDate(0, 10), recovery.Filter{}, 1)
	p, err := s.Fetch(context.Background(), recovery.Cursor{})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Someone rewrites the first line with one of the same length.
	if err := os.WriteFile(path, []byte(strings.Join([]string{act("z", 1, 1), act("b", 2, 1), act("c", 3, 1)}, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ = Open(path, byDate(0, 10), recovery.Filter{}, 1)
	defer s.Close()
	_, err = s.Fetch(context.Background(), p.Next)
	if !errors.Is(err, recovery.ErrCheckpointUnavailable) || !strings.Contains(err.Error(), "changed since the checkpoint was written: line 1 is not the line delivered there") {
		t.Fatalf("resume on changed export: %v", err)
	}
}

func TestMalformedLineNamed(t *testing.T) {
	tests := []struct{ line, want string }{
		{`{"_id":"x","timestamp":`, "export.jsonl line 3: not valid JSON"},
		{`{"timestamp":5}`, `export.jsonl line 3: the activity has no "_id"`},
		{`hello`, "export.jsonl line 3: not valid JSON"},
		// The line's own text is shown escaped: it cannot forge a log
		// line or reach the terminal.
		{`{"_id":"x\nlevel=INFO msg=completed\u001b[2J","timestamp":"now"}`,
			`export.jsonl line 3: "activity x\nlevel=INFO msg=completed\x1b[2J: \"timestamp\" \"now\" is not epoch milliseconds"`},
	}
	for _, tt := range tests {
		path := writeExport(t, act("a", 1, 1), act("b", 2, 1), tt.line, act("c", 3, 1))
		s, _ := Open(path, byDate(0, 10), recovery.Filter{}, 100)
		_, err := s.Fetch(context.Background(), recovery.Cursor{})
		s.Close()
		if !errors.Is(err, recovery.ErrUsage) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "fix or remove that line") {
			t.Errorf("line %s: %v", tt.line, err)
		}
	}
}

func TestLongLines(t *testing.T) {
	long := fmt.Sprintf(`{"_id":"long","timestamp":5,"description":%q}`, strings.Repeat("é|=\\", 200_000)) // ~1.2 MB
	path := writeExport(t, act("a", 1, 1), long, act("b", 6, 1))
	s, _ := Open(path, byDate(0, 10), recovery.Filter{}, 100)
	defer s.Close()
	p, err := s.Fetch(context.Background(), recovery.Cursor{})
	if err != nil || len(p.Activities) != 3 || string(p.Activities[1].Raw) != long || p.Activities[2].ID != "b" {
		t.Fatalf("long line: %v, %d activities", err, len(p.Activities))
	}
}

func TestMissingExport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.jsonl")
	if _, err := Open(path, byDate(0, 1), recovery.Filter{}, 1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a missing export: %v", err)
	}
	if _, err := Identity(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Identity of a missing export: %v", err)
	}
}

// An export must be a regular file: a resume seeks to a byte offset and
// the identity reads the first MiB, which a pipe would give only once. A
// pipe, a device or a directory is refused at once; before, Identity
// drained a pipe and Open then waited for ever for a second writer.
func TestExportMustBeARegularFile(t *testing.T) {
	dir := t.TempDir()
	paths := []string{dir, "/dev/null"}
	if fifo := filepath.Join(dir, "pipe"); mkfifo(fifo) == nil {
		paths = append(paths, fifo) // no writer: an open that waited would hang here
	}
	for _, path := range paths {
		var notRegular *argfile.NotRegularError
		if _, err := Identity(path); !errors.As(err, &notRegular) || notRegular.Path != path {
			t.Errorf("Identity(%s): %v", path, err)
		}
		if _, err := Open(path, byDate(0, 1), recovery.Filter{}, 1); !errors.As(err, &notRegular) {
			t.Errorf("Open(%s): %v", path, err)
		}
	}
}

// A page is decoded on several goroutines, in rounds; what it yields must
// be what a line-by-line read yields: the same activities in file order,
// the same cursor, and the first bad line named.
func TestParallelDecodeKeepsFileOrder(t *testing.T) {
	const n = 3*decodeRound + 17
	var lines, want []string
	for i := range n {
		ts := int64(1000 + i)
		if i%7 == 3 {
			ts = 99 // outside the window
		}
		id := fmt.Sprintf("a%05d", i)
		lines = append(lines, act(id, ts, 1))
		if ts != 99 {
			want = append(want, id)
		}
	}
	path := writeExport(t, lines...)
	s, err := Open(path, byDate(1000, 1_000_000), recovery.Filter{}, decodeRound+100)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids, sizes, end := drain(t, s, recovery.Cursor{})
	if !slices.Equal(ids, want) {
		t.Fatalf("got %d ids, want %d in file order; first got %v", len(ids), len(want), ids[:min(5, len(ids))])
	}
	for _, size := range sizes[:len(sizes)-1] {
		if size != decodeRound+100 {
			t.Errorf("page sizes %v: every page but the last must be full", sizes)
			break
		}
	}
	if info, _ := os.Stat(path); at(t, end).Line != n || at(t, end).Offset != info.Size() {
		t.Errorf("final cursor %s, want line %d byte %d", end.Token, n, info.Size())
	}

	// Every page's activities keep their own bytes while later pages are
	// read: no buffer is reused under them.
	var pages []recovery.Page
	for cur := (recovery.Cursor{}); ; {
		p, err := s.Fetch(context.Background(), cur)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, p)
		if p.Last {
			break
		}
		cur = p.Next
	}
	byID := map[string]string{}
	for _, l := range lines {
		a, _ := recovery.ParseActivity([]byte(l))
		byID[a.ID] = l
	}
	for _, p := range pages {
		for _, a := range p.Activities {
			if string(a.Raw) != byID[a.ID] {
				t.Fatalf("activity %s: Raw %.60q..., want its line", a.ID, a.Raw)
			}
		}
	}

	// Two bad lines in one round: the first is the one named.
	lines[decodeRound+500] = `{"_id":"bad"`
	lines[decodeRound+1500] = `nope`
	s2, _ := Open(writeExport(t, lines...), byDate(1000, 1_000_000), recovery.Filter{}, n)
	defer s2.Close()
	_, err = s2.Fetch(context.Background(), recovery.Cursor{})
	if wantErr := fmt.Sprintf("export.jsonl line %d: not valid JSON", decodeRound+501); err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Errorf("Fetch: %v, want %q", err, wantErr)
	}
}

func TestTooLongLineNamed(t *testing.T) {
	long := `{"_id":"long","timestamp":5,"description":"` + strings.Repeat("x", MaxLineBytes) + `"}`
	path := writeExport(t, act("a", 1, 1), act("b", 2, 1), long, act("c", 3, 1))
	s, _ := Open(path, byDate(0, 10), recovery.Filter{}, 100)
	defer s.Close()
	_, err := s.Fetch(context.Background(), recovery.Cursor{})
	want := fmt.Sprintf("export.jsonl line 3: longer than %d bytes", MaxLineBytes)
	if !errors.Is(err, recovery.ErrUsage) || err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "fix or remove that line") {
		t.Fatalf("Fetch: %v, want %q", err, want)
	}
}

// One huge line must not leave every later round with a buffer its size:
// the rounds after it are sized for the lines they read.
func TestHugeLineDoesNotSizeLaterRounds(t *testing.T) {
	lines := []string{act("a", 1, 1), fmt.Sprintf(`{"_id":"huge","timestamp":2,"description":%q}`, strings.Repeat("x", 6<<20))}
	for i := range 2*decodeRound + 10 {
		lines = append(lines, act(fmt.Sprint(i), 3, 1))
	}
	s, _ := Open(writeExport(t, lines...), byDate(0, 10), recovery.Filter{}, len(lines))
	defer s.Close()
	p, err := s.Fetch(context.Background(), recovery.Cursor{})
	if err != nil || len(p.Activities) != len(lines) || string(p.Activities[1].Raw) != lines[1] {
		t.Fatalf("Fetch: %v, %d activities", err, len(p.Activities))
	}
	if c := cap(s.round.buf); c > 1<<20 {
		t.Errorf("the round buffer kept %d bytes of capacity after the huge line", c)
	}
}

// TestWindowByCreated: with --by created the window applies to when MCAS
// saved each activity (created, else createdRaw): one that happened before
// the window but was saved in it is sent, one saved after it is not.
func TestWindowByCreated(t *testing.T) {
	saved := func(id string, ts int64, key string, created int64) string {
		return fmt.Sprintf(`{"_id":%q,"timestamp":%d,%q:%d,"appId":1}`, id, ts, key, created)
	}
	path := writeExport(t,
		saved("happened-before", 500, "created", 1200),
		saved("inside", 1100, "created", 1101),
		saved("saved-after", 1900, "created", 2000),
		saved("raw-only", 1000, "createdRaw", 1999),
		saved("saved-at-start", 999, "created", 1000),
	)
	for _, tc := range []struct {
		by   recovery.TimeField
		want []string
	}{
		{recovery.ByCreated, []string{"happened-before", "inside", "raw-only", "saved-at-start"}},
		{recovery.ByDate, []string{"inside", "saved-after", "raw-only"}},
	} {
		s, err := Open(path, recovery.Scope{Window: recovery.Window{Start: 1000, End: 2000}, By: tc.by}, recovery.Filter{}, 2)
		if err != nil {
			t.Fatal(err)
		}
		ids, _, _ := drain(t, s, recovery.Cursor{})
		s.Close()
		if !slices.Equal(ids, tc.want) {
			t.Errorf("by %s: %v, want %v", tc.by, ids, tc.want)
		}
	}
}

// TestNoCreatedNamed: a window by created cannot place an activity that
// does not say when it was saved; the line is named, with the way out.
func TestNoCreatedNamed(t *testing.T) {
	path := writeExport(t, `{"_id":"a","timestamp":5,"created":6}`, `{"_id":"b","timestamp":5}`)
	s, err := Open(path, recovery.Scope{Window: recovery.Window{Start: 0, End: 10}, By: recovery.ByCreated}, recovery.Filter{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Fetch(context.Background(), recovery.Cursor{})
	want := `export.jsonl line 2: the activity has neither "created" nor "createdRaw", so it cannot be placed in a window by created; ` +
		"recover from an export whose activities carry created, or by the time they happened (--by date)"
	if !errors.Is(err, recovery.ErrUsage) || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("got %v\nwant …%s", err, want)
	}
}
