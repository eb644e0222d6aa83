package sink

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"siem-recovery/recovery"
)

// Frames, prepared (formatted on several goroutines) or formatted as they
// are sent, are byte for byte the batch formatted on one, frame for frame
// in any order, for every framing, for sizes around the split points and
// frames larger than a chunk; the frames a failed write started are
// counted as over the serial bytes; and the reused buffers do not leak one
// batch into the next.
func TestFramesMatchSerialFormatting(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4)) // up to 3 runs of 512 and more
	as := makeActivities(3*minFramesPerWorker + 7)
	big := makeActivities(3)
	big[1].Description = strings.Repeat("x", writeChunk+100) // a frame larger than a chunk
	for _, framing := range []string{FramingLF, FramingOctet} {
		e := &encoder{format: Formatter{Version: "t"}, syslog: SyslogRFC5424, framing: framing, hostname: "h", appName: "a"}
		var prepared, asSent frames
		for _, batch := range [][]recovery.Activity{as, as[:2*minFramesPerWorker], as[:2*minFramesPerWorker+1], as[:minFramesPerWorker], as[:5], big} {
			want, wantEnds := e.appendFrames(nil, nil, batch)
			prepared.format(e, batch)
			asSent.formatAsSent(e, batch)
			for name, f := range map[string]*frames{"prepared": &prepared, "as sent": &asSent} {
				t.Run(fmt.Sprintf("%s/%s/%d", framing, name, len(batch)), func(t *testing.T) {
					largest := 0
					for i, end := range wantEnds {
						largest = max(largest, end-slices.Concat([]int{0}, wantEnds)[i])
					}
					var got []byte
					for chunk := range f.chunks() {
						if len(chunk) >= writeChunk+largest {
							t.Fatalf("a chunk of %d bytes: more than a chunk and a frame", len(chunk))
						}
						got = append(got, chunk...)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("bytes differ from serial formatting (%d vs %d bytes)", len(got), len(want))
					}
					if f.count() != len(batch) {
						t.Fatalf("%d frames, want %d", f.count(), len(batch))
					}
					frame := func(i int) []byte {
						start := 0
						if i > 0 {
							start = wantEnds[i-1]
						}
						return want[start:wantEnds[i]]
					}
					// In order, then back to the start and from the middle on,
					// as RELP sends again from the first unacknowledged one.
					order := slices.Concat(seq(0, len(batch)), seq(0, 2), seq(len(batch)/2, len(batch)))
					for _, i := range order {
						if !bytes.Equal(f.frame(i), frame(i)) {
							t.Fatalf("frame %d differs from serial formatting", i)
						}
					}
					for _, written := range []int{0, 1, wantEnds[0], wantEnds[0] + 1, len(want) / 2, len(want) - 1, len(want)} {
						if got, want := f.started(written), framesStarted(wantEnds, written); got != want {
							t.Errorf("started(%d) = %d, want %d", written, got, want)
						}
					}
				})
			}
		}
	}
}

// seq is lo, lo+1, …, hi-1.
func seq(lo, hi int) []int {
	var s []int
	for i := lo; i < hi; i++ {
		s = append(s, i)
	}
	return s
}

// A Send that formatted its batch as it sent it keeps no hold on the
// batch's activities once it returned: the replay loop's page would stay
// in memory until the next Send.
func TestSendKeepsNoActivities(t *testing.T) {
	recv := startPausingReceiver(t, 1)
	close(recv.resume)
	opts := testOptions(t)
	opts.Format = FormatJSON
	s, err := Open(t.Context(), "tcp://"+recv.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(t.Context(), recovery.Batch{Activities: makeActivities(10)}); err != nil {
		t.Fatal(err)
	}
	if got := bytes.Count(<-recv.received, []byte("\n")); got != 10 {
		t.Fatalf("the receiver got %d messages, want 10", got)
	}
	if own := &s.(*streamSink).own; own.batch != nil {
		t.Fatalf("the sink holds the %d activities it sent", len(own.batch))
	}
}

// CEF is formatted ahead of its Send; JSON, little more than a copy of the
// lines, is left to Send, so that no second batch of the lines' bytes waits
// beside the one in flight.
func TestOnlyCEFIsPreparedAhead(t *testing.T) {
	as := makeActivities(3)
	cef := &encoder{format: Formatter{Version: "t"}, syslog: SyslogRFC5424, framing: FramingLF, hostname: "h", appName: "a"}
	f, ok := prepare(cef, nil, as).(*frames)
	if !ok || f.count() != len(as) {
		t.Fatalf("CEF prepared as %#v, want the frames of %d activities", f, len(as))
	}
	json := *cef
	json.json = true
	if p := prepare(&json, f, as); p != nil {
		t.Fatalf("JSON prepared as %T, want nothing", p)
	}
}
