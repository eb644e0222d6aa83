package sink

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"siem-recovery/recovery"
)

// fileOptions are the options of the file sink tests, by format and
// syslog header.
func fileOptions(t *testing.T, format, header string) Options {
	opts := testOptions(t)
	opts.Format, opts.Syslog = format, header
	return opts
}

var fileVariants = []struct{ format, header string }{
	{FormatCEF, ""}, {FormatCEF, SyslogRFC5424}, {FormatCEF, SyslogRFC3164},
	{FormatJSON, ""}, {FormatJSON, SyslogRFC5424}, {FormatJSON, SyslogRFC3164},
}

func openFile(t *testing.T, path string, opts Options) *fileSink {
	t.Helper()
	s, err := Open(context.Background(), "file:"+path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s.(*fileSink)
}

// fileBytes is what the file sink writes for as.
func fileBytes(t *testing.T, opts Options, as []recovery.Activity) []byte {
	t.Helper()
	enc, err := opts.withDefaults().encoder(&fileKind)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := enc.appendFrames(nil, nil, as)
	return b
}

func ids(as []recovery.Activity) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	slices.Sort(out)
	return out
}

// TestFileResumeAfterACrashMidBatch plays a run killed in the middle of
// a batch: the lines it finished are recognised, the torn one is cut (not
// completed), and writing the rest of the batch leaves every activity in
// the file once, in whole lines.
func TestFileResumeAfterACrashMidBatch(t *testing.T) {
	as := makeActivities(40)
	before, batch := as[:10], as[10:]
	for _, v := range fileVariants {
		for _, whole := range []int{0, 1, 17, len(batch)} {
			t.Run(fmt.Sprintf("%s %s %d whole", v.format, v.header, whole), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "out.log")
				opts := fileOptions(t, v.format, v.header)
				s := openFile(t, path, opts)
				if _, err := s.Send(context.Background(), recovery.Batch{Activities: before}); err != nil {
					t.Fatal(err)
				}
				mark, err := s.Mark(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				// The dead run's writes: whole lines, then a part of the next.
				written := fileBytes(t, opts, batch[:whole])
				if whole < len(batch) {
					next := fileBytes(t, opts, batch[whole:whole+1])
					written = append(written, next[:len(next)/2]...)
				}
				appendTo(t, path, written)

				var logged logRecorder
				opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
				s = openFile(t, path, opts)
				defer s.Close()
				held, err := s.Resume(context.Background(), mark)
				if err != nil {
					t.Fatal(err)
				}
				if held == nil {
					t.Fatal("Resume cannot tell what the file holds")
				}
				if got, want := slices.Sorted(maps.Keys(held)), ids(batch[:whole]); !slices.Equal(got, want) {
					t.Fatalf("recognised %v, want the %d whole lines' ids %v", got, whole, want)
				}
				cut := strings.Contains(strings.Join(logged.lines(), ""), "removed the torn last line")
				if cut != (whole < len(batch)) {
					t.Errorf("torn line removed: %v; logged:\n%s", cut, strings.Join(logged.lines(), ""))
				}
				if got, want := readFile(t, path), fileBytes(t, opts, as[:10+whole]); !bytes.Equal(got, want) {
					t.Fatalf("after Resume the file holds\n%q\nwant\n%q", got, want)
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
				if got, want := readFile(t, path), fileBytes(t, opts, as); !bytes.Equal(got, want) {
					t.Fatalf("the file holds\n%q\nwant every activity once\n%q", got, want)
				}
			})
		}
	}
}

// TestFileResumeCutsNothingOfAnotherFile: a mark taken on a file that has
// since been rotated away or cut shorter than the mark finds none of the
// batch (the dead run wrote none of it) and cuts nothing: the batch is
// written whole.
func TestFileResumeCutsNothingOfAnotherFile(t *testing.T) {
	as := makeActivities(6)
	for _, tt := range []struct {
		name   string
		change func(t *testing.T, path string)
	}{
		{"rotated", func(t *testing.T, path string) {
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
			appendTo(t, path, []byte("a line of the new file\nand half a li"))
		}},
		{"cut shorter", func(t *testing.T, path string) {
			if err := os.Truncate(path, 5); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.log")
			opts := fileOptions(t, FormatCEF, "")
			s := openFile(t, path, opts)
			if _, err := s.Send(context.Background(), recovery.Batch{Activities: as[:3]}); err != nil {
				t.Fatal(err)
			}
			mark, err := s.Mark(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			tt.change(t, path)
			was := readFile(t, path)
			s = openFile(t, path, opts)
			defer s.Close()
			held, err := s.Resume(context.Background(), mark)
			if err != nil || len(held) != 0 {
				t.Fatalf("Resume: %v, %v; want none of the batch", held, err)
			}
			if got := readFile(t, path); !bytes.Equal(got, was) {
				t.Fatalf("Resume changed another file:\n%q\nwas\n%q", got, was)
			}
		})
	}
}

// TestFileSinkEndsAForeignTornLine: a fragment no record accounts for is
// not this tool's to cut; the first write ends it with a line end. Opening
// the sink alone (check does) changes nothing.
func TestFileSinkEndsAForeignTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	const foreign = "{\"_id\":\"a\"}\n{\"_id\":\"b\",\"desc"
	appendTo(t, path, []byte(foreign))
	opts := Options{Format: FormatJSON}
	s := openFile(t, path, opts)
	s.Close()
	if got := string(readFile(t, path)); got != foreign {
		t.Fatalf("opening the sink changed the file to %q", got)
	}
	s = openFile(t, path, opts)
	if _, err := s.Send(context.Background(), recovery.Batch{Activities: []recovery.Activity{{ID: "b", Raw: []byte(`{"_id":"b"}`)}}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got, want := string(readFile(t, path)), foreign+"\n{\"_id\":\"b\"}\n"; got != want {
		t.Fatalf("file holds %q, want %q", got, want)
	}
}

// TestActivityIDOfEachMessage: the id read back from every message the
// encoder writes is the activity's, whatever its characters.
func TestActivityIDOfEachMessage(t *testing.T) {
	as := makeActivities(20)
	for i, id := range []string{`x rt=5`, `a\b=c|d`, "line\r\nbreak", `trailing\`, "é東京"} {
		as[i].ID = id
		as[i].Raw = fmt.Appendf(nil, `{"_id":%q,"timestamp":1700000000000}`, id)
	}
	for _, v := range fileVariants {
		for _, kind := range []*Kind{&fileKind, &tcpKind} {
			enc, err := fileOptions(t, v.format, v.header).withDefaults().encoder(kind)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range as {
				msg := enc.appendMessage(nil, a)
				if got, ok := enc.activityID(msg); !ok || got != a.ID {
					t.Errorf("%s %s %s: id of %q is %q (%v), want %q", kind.Scheme, v.format, v.header, msg, got, ok, a.ID)
				}
			}
		}
	}
	enc, _ := fileOptions(t, FormatCEF, "").withDefaults().encoder(&fileKind)
	for _, bad := range []string{"", "2024-05-14T08:00:00.000Z", "2024-05-14T08:00:00.000Z CEF:0|MCAS|x", "2024-05-14T08:00:00.000Z CEF:0|MCAS|SIEM_Agent|1|s|n|0|msg=x", "not a line\\"} {
		if id, ok := enc.activityID([]byte(bad)); ok {
			t.Errorf("%q: id %q, want none", bad, id)
		}
	}
}

func appendTo(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFileMarkOfAFIFO: a FIFO cannot be read back: no mark, so a crash's
// batch is written again whole.
func TestFileMarkOfAFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "siem.fifo")
	if err := mkfifo(path); err != nil {
		t.Skip("no FIFO here:", err)
	}
	go func() { // a reader, so that opening for writing does not block
		if f, err := os.Open(path); err == nil {
			io.Copy(io.Discard, f)
			f.Close()
		}
	}()
	s := openFile(t, path, fileOptions(t, FormatCEF, ""))
	defer s.Close()
	if mark, err := s.Mark(context.Background()); mark != nil || err != nil {
		t.Fatalf("Mark of a FIFO: %s, %v; want none", mark, err)
	}
}

// BenchmarkFileSink writes pages of 5,000 activities as a run does (Mark,
// then Send, each batch synced) and reports the activities a second.
func BenchmarkFileSink(b *testing.B) {
	as := makeActivities(5000)
	s, err := Open(context.Background(), "file:"+filepath.Join(b.TempDir(), "out.log"), Options{Version: "1.0.0-bench", Hostname: "h"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rs := s.(recovery.Resumer)
	b.ResetTimer()
	for b.Loop() {
		if _, err := rs.Mark(context.Background()); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Send(context.Background(), recovery.Batch{Activities: as}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(as))/b.Elapsed().Seconds(), "activities/s")
}
