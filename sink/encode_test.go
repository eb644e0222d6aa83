package sink

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"testing"
)

// A batch formatted on several goroutines is byte for byte the batch
// formatted on one, with the same frame ends, for every framing and for
// sizes around the split points; and the reused buffers do not leak one
// batch into the next.
func TestFramerMatchesSerialFormatting(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	}
	as := makeActivities(3*minFramesPerWorker + 7)
	for _, framing := range []string{FramingLF, FramingOctet} {
		e := &encoder{format: Formatter{Version: "t"}, syslog: SyslogRFC5424, framing: framing, hostname: "h", appName: "a"}
		var f framer
		var buf []byte
		var ends []int
		for _, n := range []int{3*minFramesPerWorker + 7, 2 * minFramesPerWorker, 2*minFramesPerWorker + 1, minFramesPerWorker, 5} {
			t.Run(fmt.Sprintf("%s/%d", framing, n), func(t *testing.T) {
				wantBuf, wantEnds := e.appendFrames([]byte("previous"), []int{8}, as[:n])
				buf, ends = f.appendFrames(e, append(buf[:0], "previous"...), append(ends[:0], 8), as[:n])
				if !bytes.Equal(buf, wantBuf) {
					t.Errorf("bytes differ from serial formatting (%d vs %d bytes)", len(buf), len(wantBuf))
				}
				if !slices.Equal(ends, wantEnds) {
					t.Errorf("frame ends differ from serial formatting")
				}
			})
		}
	}
}
