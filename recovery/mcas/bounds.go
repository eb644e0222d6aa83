package mcas

import (
	"fmt"
	"io"
)

// Bounds of what is read of one answer, as it arrives (inflated, when the
// API sends it gzipped: the transport asks for gzip and inflates it as it
// is read, so the bounds count what the JSON decoder is given, never the
// smaller bytes on the wire).
//
// A page never holds more activities than its limit (they are counted as
// they are decoded), and its memory follows its bytes: each activity's
// text (kept for --format json), the fields CEF maps, the lines the sink
// prepares. So the bytes are bounded twice: MaxAnswer for the whole
// answer, several times what a page of 5,000 real activities weighs
// (about 11 MB), and MaxActivity for any one value in it (an activity, or
// a member the source skips), which the decoder would otherwise buffer
// whole however large: an activity of 120 MiB, or a gzip bomb of a
// single string, is refused after its first MiB. An error answer needs
// only its first words.
const (
	MaxAnswer      = 32 << 20
	MaxActivity    = 1 << 20
	maxErrorAnswer = 64 << 10
)

// valueSlack is what the decoder may read past a value's end before it
// knows the value ended (a number's last digit, white space).
const valueSlack = 4 << 10

// answerReader reads the body of a 200 answer under both bounds: its
// reads fail once the answer has given max bytes, or once the value being
// decoded, which began at byte from, has given more than MaxActivity. It
// never lets a read run past either bound, so the decoder's buffer never
// holds more than about one value.
type answerReader struct {
	r    io.Reader
	read int64 // bytes given so far
	max  int64
	// from is where the value being decoded began; what names it for the
	// error. Empty what: no value bound.
	from int64
	what string
	// inflated: the API sent gzip, which the transport inflates.
	inflated bool
}

// value starts the bound of one value, which begins at byte from of the
// answer (the decoder's InputOffset), and is named what in the error.
func (b *answerReader) value(from int64, what string) { b.from, b.what = from, what }

func (b *answerReader) Read(p []byte) (int, error) {
	left := b.max - b.read
	if b.what != "" {
		left = min(left, b.from+MaxActivity+valueSlack-b.read)
	}
	if left <= 0 {
		return 0, b.tooLarge()
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	return n, err
}

// tooLarge is the error of the bound read up to.
func (b *answerReader) tooLarge() error {
	inflated := ""
	if b.inflated {
		inflated = " once inflated (the API sent it gzipped)"
	}
	if b.what != "" && b.read-b.from >= MaxActivity {
		return malformed("%s is larger than %d MiB%s", b.what, MaxActivity>>20, inflated)
	}
	return &failure{reason: reasonMalformed, remedy: remedyAnswerSize,
		cause: fmt.Errorf("the answer is larger than %d MiB%s", b.max>>20, inflated)}
}
