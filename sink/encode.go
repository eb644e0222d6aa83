package sink

import (
	"bytes"
	"strconv"

	"siem-recovery/internal/parallel"
	"siem-recovery/recovery"
)

// Syslog headers (Options.Syslog).
const (
	SyslogRFC5424 = "rfc5424"
	SyslogRFC3164 = "rfc3164"
	SyslogNone    = "none"
)

// Framings of a TCP or TLS stream (Options.Framing).
const (
	FramingLF    = "lf"    // each message ends with LF
	FramingOctet = "octet" // RFC 6587 octet counting: "LEN SP MSG"
)

// Formats of the message (Options.Format).
const (
	FormatCEF  = "cef"
	FormatJSON = "json"
)

// pri is the PRI of every syslog header: facility local0 (16), severity
// informational (6): 16*8+6. An activity is a record, not an alarm; local0
// keeps it apart from the host's own logs in a receiver's rules.
const pri = "<134>"

// encoder turns an activity into the bytes a sink writes: the payload
// (CEF or JSON), behind a syslog header or the agent's timestamp, framed
// for the transport. It is shared by every sink, so a line written to a
// file is byte for byte the message sent to a syslog receiver.
type encoder struct {
	format   Formatter
	json     bool
	syslog   string // SyslogRFC5424, SyslogRFC3164 or SyslogNone
	framing  string // FramingLF, FramingOctet, or "" for a datagram
	hostname string // sanitised for the header
	appName  string // sanitised for the header
}

// appendMessage appends a's message without framing: syslog header (or,
// without one, the agent's timestamp before a CEF line) and payload.
func (e *encoder) appendMessage(dst []byte, a recovery.Activity) []byte {
	switch e.syslog {
	case SyslogRFC5424:
		// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
		dst = append(dst, pri+"1 "...)
		dst = AppendTime(dst, a.Timestamp)
		dst = append(dst, ' ')
		dst = append(dst, e.hostname...)
		dst = append(dst, ' ')
		dst = append(dst, e.appName...)
		dst = append(dst, " - - - "...)
	case SyslogRFC3164:
		// <PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MSG, the time in UTC.
		dst = append(dst, pri...)
		dst = appendStamp(dst, a.Timestamp)
		dst = append(dst, ' ')
		dst = append(dst, e.hostname...)
		dst = append(dst, ' ')
		dst = append(dst, e.appName...)
		dst = append(dst, ": "...)
	default:
		if !e.json {
			dst = AppendTime(dst, a.Timestamp)
			dst = append(dst, ' ')
		}
	}
	if e.json {
		return e.format.AppendJSON(dst, a)
	}
	return e.format.AppendCEF(dst, a)
}

// activityID returns the id of the activity whose message is msg, as
// appendMessage wrote it (no line end): the externalId of a CEF line, the
// "_id" of a JSON one (read as the source's were). It reads past the
// syslog header by its shape: HOSTNAME and APP-NAME hold no space.
func (e *encoder) activityID(msg []byte) (string, bool) {
	skip := 0 // spaces before the payload
	switch e.syslog {
	case SyslogRFC5424:
		skip = 7 // "<PRI>1 TIMESTAMP HOSTNAME APP-NAME - - - "
	case SyslogRFC3164:
		// "<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: ", the stamp of fixed width
		const stamp = len(pri + "Jan _2 15:04:05 ")
		if len(msg) < stamp {
			return "", false
		}
		msg, skip = msg[stamp:], 2
	default:
		if !e.json {
			skip = 1 // the activity's time
		}
	}
	for ; skip > 0; skip-- {
		i := bytes.IndexByte(msg, ' ')
		if i < 0 {
			return "", false
		}
		msg = msg[i+1:]
	}
	if !e.json {
		return cefExternalID(msg)
	}
	a, err := recovery.ParseActivity(msg)
	return a.ID, err == nil
}

// appendFrames appends the frames of batch to dst and the offset just
// after each frame to ends.
func (e *encoder) appendFrames(dst []byte, ends []int, batch []recovery.Activity) ([]byte, []int) {
	for _, a := range batch {
		dst = e.appendFrame(dst, a)
		ends = append(ends, len(dst))
	}
	return dst, ends
}

// frames are a batch's messages, framed, as a stream or RELP sink sends
// them: what its Prepare makes (a recovery.Prepared), or what its Send
// formats when nothing was prepared. Each value has its own memory, reused
// from batch to batch, so preparing one batch never touches another's.
type frames struct {
	buf    []byte
	ends   []int // ends[i] is the offset just after frame i
	framer framer
}

// format makes f the frames of batch.
func (f *frames) format(e *encoder, batch []recovery.Activity) {
	f.buf, f.ends = f.framer.appendFrames(e, f.buf[:0], f.ends[:0], batch)
}

// frame is frame i.
func (f *frames) frame(i int) []byte {
	start := 0
	if i > 0 {
		start = f.ends[i-1]
	}
	return f.buf[start:f.ends[i]]
}

// prepare is the Prepare of the sinks that send frames: batch formatted
// into reuse when it is frames a Send is done with, else into new ones.
func prepare(e *encoder, reuse recovery.Prepared, batch []recovery.Activity) recovery.Prepared {
	f, _ := reuse.(*frames)
	if f == nil {
		f = new(frames)
	}
	f.format(e, batch)
	return f
}

// framesOf returns the frames of b: those b.Prepared holds, else own
// formatted now.
func framesOf(e *encoder, b recovery.Batch, own *frames) *frames {
	if f, ok := b.Prepared.(*frames); ok {
		return f
	}
	own.format(e, b.Activities)
	return own
}

// framer formats a large batch on every CPU: contiguous parts of it are
// formatted at once and joined in order, so the bytes are those of
// encoder.appendFrames. Its buffers are reused from batch to batch; one
// framer is not for concurrent use.
type framer struct {
	parts []framePart // parts 1..n-1; part 0 is formatted in place
}

type framePart struct {
	buf  []byte
	ends []int
}

// minFramesPerWorker keeps a small batch on one goroutine.
const minFramesPerWorker = 512

func (f *framer) appendFrames(e *encoder, dst []byte, ends []int, batch []recovery.Activity) ([]byte, []int) {
	parts := parallel.Parts(len(batch), minFramesPerWorker)
	if parts == 1 {
		return e.appendFrames(dst, ends, batch)
	}
	for len(f.parts) < parts-1 {
		f.parts = append(f.parts, framePart{})
	}
	for i := range f.parts { // nothing of the last batch is joined again
		f.parts[i].buf, f.parts[i].ends = f.parts[i].buf[:0], f.parts[i].ends[:0]
	}
	parallel.Run(len(batch), parts, func(part, lo, hi int) {
		if part == 0 { // on this goroutine: straight into dst
			dst, ends = e.appendFrames(dst, ends, batch[lo:hi])
			return
		}
		p := &f.parts[part-1]
		p.buf, p.ends = e.appendFrames(p.buf[:0], p.ends[:0], batch[lo:hi])
	})
	for _, p := range f.parts[:parts-1] {
		base := len(dst)
		dst = append(dst, p.buf...)
		for _, end := range p.ends {
			ends = append(ends, base+end)
		}
	}
	return dst, ends
}

// appendFrame appends a's message framed for the stream.
func (e *encoder) appendFrame(dst []byte, a recovery.Activity) []byte {
	start := len(dst)
	dst = e.appendMessage(dst, a)
	switch e.framing {
	case FramingOctet:
		// Make room for "LEN " in front of the message, in place.
		var digits [20]byte
		prefix := strconv.AppendInt(digits[:0], int64(len(dst)-start), 10)
		prefix = append(prefix, ' ')
		n := len(dst) - start
		dst = append(dst, prefix...)
		copy(dst[start+len(prefix):], dst[start:start+n])
		copy(dst[start:], prefix)
	case FramingLF:
		dst = append(dst, '\n')
	}
	return dst
}

// headerName keeps what RFC 5424 allows in HOSTNAME and APP-NAME: printable
// US-ASCII without space, at most max bytes; anything else becomes '_'.
// An empty name is the NILVALUE "-".
func headerName(s string, max int) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	if len(b) > max {
		b = b[:max]
	}
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}
