package sink

import (
	"bytes"
	"iter"
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
	id, _, _, err := recovery.RecordOfJSON(msg)
	return id, err == nil
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
//
// Prepared frames hold the whole batch, formatted ahead on every CPU, each
// a contiguous run of it in a buffer of its own; the runs are written one
// after the other rather than joined: a joined copy kept the batch's bytes
// twice (about 4 MiB of CEF, 11 MiB of JSON for a page of 5,000 activities
// of the API's shape), for every batch prepared or in flight.
//
// Frames a Send makes for itself are formatted as they are sent, a chunk
// at a time into one buffer, and again if the batch is sent again: a Send
// that was handed no prepared frames holds a chunk, not the batch.
type frames struct {
	runs []frameRun // prepared: the first n hold the batch, in order
	n    int

	// Formatted as sent: batch, by enc; window holds the frames from
	// first on, at most about a chunk of them.
	enc    *encoder
	batch  []recovery.Activity
	window frameRun
	first  int
}

// frameRun is a contiguous run of a batch's frames.
type frameRun struct {
	buf  []byte
	ends []int // ends[i] is the offset in buf just after the run's frame i
}

// minFramesPerWorker keeps a small batch on one goroutine.
const minFramesPerWorker = 512

// format makes f the frames of batch, formatted now.
func (f *frames) format(e *encoder, batch []recovery.Activity) {
	f.enc, f.batch = nil, nil
	parts := parallel.Parts(len(batch), minFramesPerWorker)
	for len(f.runs) < parts {
		f.runs = append(f.runs, frameRun{})
	}
	f.n = parts
	for i := range f.runs { // nothing of the last batch is sent again
		f.runs[i].buf, f.runs[i].ends = f.runs[i].buf[:0], f.runs[i].ends[:0]
	}
	parallel.Run(len(batch), parts, func(part, lo, hi int) {
		r := &f.runs[part]
		r.buf, r.ends = e.appendFrames(r.buf, r.ends, batch[lo:hi])
	})
}

// formatAsSent makes f the frames of batch, to be formatted as they are
// sent.
func (f *frames) formatAsSent(e *encoder, batch []recovery.Activity) {
	f.enc, f.batch, f.n = e, batch, 0
	f.fill(len(batch)) // nothing of the last batch is sent again
}

// forget lets go of the activities of a batch formatted as sent, once
// its Send returned: the page they belong to is not kept until the next.
func (f *frames) forget() { f.batch = nil }

// fill formats the frames from i on into the window, until it holds a
// chunk's worth.
func (f *frames) fill(i int) {
	w := &f.window
	w.buf, w.ends, f.first = w.buf[:0], w.ends[:0], i
	for ; i < len(f.batch) && len(w.buf) < writeChunk; i++ {
		w.buf = f.enc.appendFrame(w.buf, f.batch[i])
		w.ends = append(w.ends, len(w.buf))
	}
}

// count is the number of frames.
func (f *frames) count() int {
	if f.enc != nil {
		return len(f.batch)
	}
	n := 0
	for _, r := range f.runs[:f.n] {
		n += len(r.ends)
	}
	return n
}

// frame is frame i. Of frames formatted as sent, it holds until the next
// call.
func (f *frames) frame(i int) []byte {
	if f.enc != nil {
		if i < f.first || i >= f.first+len(f.window.ends) {
			f.fill(i)
		}
		return f.window.frame(i - f.first)
	}
	for _, r := range f.runs[:f.n] {
		if i < len(r.ends) {
			return r.frame(i)
		}
		i -= len(r.ends)
	}
	panic("sink: frame index out of range")
}

// frame is frame i of the run.
func (r *frameRun) frame(i int) []byte {
	start := 0
	if i > 0 {
		start = r.ends[i-1]
	}
	return r.buf[start:r.ends[i]]
}

// chunks are the batch's bytes in order, at most writeChunk at a time, so
// that a write deadline measures progress rather than the whole batch. Of
// frames formatted as sent, each chunk holds until the next.
func (f *frames) chunks() iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		if f.enc != nil {
			for i := 0; i < len(f.batch); i += len(f.window.ends) {
				if f.fill(i); !yield(f.window.buf) {
					return
				}
			}
			return
		}
		for _, r := range f.runs[:f.n] {
			for off := 0; off < len(r.buf); off += writeChunk {
				if !yield(r.buf[off:min(off+writeChunk, len(r.buf))]) {
					return
				}
			}
		}
	}
}

// started counts the frames of which at least the first byte is among the
// first n bytes of the batch: those a receiver may have got when n bytes
// were handed to the connection.
func (f *frames) started(n int) int {
	count := 0
	if f.enc != nil {
		// A write failed: the frames are formatted once more, to measure
		// them.
		var scratch []byte
		for off := 0; count < len(f.batch) && off < n; count++ {
			scratch = f.enc.appendFrame(scratch[:0], f.batch[count])
			off += len(scratch)
		}
		return count
	}
	for _, r := range f.runs[:f.n] {
		if n <= 0 {
			break
		}
		count += framesStarted(r.ends, n)
		n -= len(r.buf)
	}
	return count
}

// prepare is the Prepare of the sinks that send frames: batch formatted
// into reuse when it is frames a Send is done with, else into new ones.
// JSON is left to Send (nil): its formatting is little more than a copy
// of the lines, cheap next to decoding them, and frames made ahead would
// hold a second batch of the lines' bytes beside the one in flight.
func prepare(e *encoder, reuse recovery.Prepared, batch []recovery.Activity) recovery.Prepared {
	if e.json {
		return nil
	}
	f, _ := reuse.(*frames)
	if f == nil {
		f = new(frames)
	}
	f.format(e, batch)
	return f
}

// framesOf returns the frames of b: those b.Prepared holds, else own,
// formatted as they are sent.
func framesOf(e *encoder, b recovery.Batch, own *frames) *frames {
	if f, ok := b.Prepared.(*frames); ok {
		return f
	}
	own.formatAsSent(e, b.Activities)
	return own
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
