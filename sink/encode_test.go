package sink

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
)

// A batch formatted on several goroutines is, run after run, byte for byte
// the batch formatted on one, frame for frame, for every framing and for
// sizes around the split points; the frames a failed write started are
// counted as over the serial bytes; and the reused buffers do not leak one
// batch into the next.
func TestFramesMatchSerialFormatting(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4)) // up to 3 runs of 512 and more
	as := makeActivities(3*minFramesPerWorker + 7)
	for _, framing := range []string{FramingLF, FramingOctet} {
		e := &encoder{format: Formatter{Version: "t"}, syslog: SyslogRFC5424, framing: framing, hostname: "h", appName: "a"}
		var f frames
		for _, n := range []int{3*minFramesPerWorker + 7, 2 * minFramesPerWorker, 2*minFramesPerWorker + 1, minFramesPerWorker, 5} {
			t.Run(fmt.Sprintf("%s/%d", framing, n), func(t *testing.T) {
				want, wantEnds := e.appendFrames(nil, nil, as[:n])
				f.format(e, as[:n])
				var got []byte
				for _, r := range f.runs[:f.n] {
					got = append(got, r.buf...)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("bytes differ from serial formatting (%d vs %d bytes)", len(got), len(want))
				}
				if f.count() != n {
					t.Fatalf("%d frames, want %d", f.count(), n)
				}
				for i := range n {
					start := 0
					if i > 0 {
						start = wantEnds[i-1]
					}
					if !bytes.Equal(f.frame(i), want[start:wantEnds[i]]) {
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
