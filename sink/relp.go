package sink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"siem-recovery/recovery"
)

// RELP, the Reliable Event Logging Protocol (librelp's doc/relp.md), as
// rsyslog's imrelp speaks it. Every frame is
//
//	TXNR SP COMMAND SP DATALEN [SP DATA] LF
//
// The client opens a session with "open" and its offers, sends each message
// as a "syslog" command and closes with "close"; the server answers each
// command, in order, with an "rsp" whose data starts with a status: 200 is
// OK, anything else an error. Transaction numbers start at 1 with the open
// and wrap from 999,999,999 to 1; 0 is the server's hints ("serverclose").

// DefaultRELPWindow is how many messages a relp:// sink sends ahead of
// their acknowledgement, and, when the acknowledgements are recorded in the
// checkpoint, ahead of their record: what a run that dies sends again, at
// most. A record is an fsync, which next to a busy disk took up to 40 ms on
// loopback tests: a window of 512 past the record then carried a third of
// what the receiver took, 2,048 as much as with no record at all. (librelp's
// default is 128; unrecorded, 512 carried a quarter more, and more than 512
// nothing more.)
const DefaultRELPWindow = 2048

const (
	relpMaxTxnr = 999_999_999
	// relpMaxAnswer caps the data of a frame the receiver sends: an "rsp"
	// carries a status, a short text and, for "open", a few offers.
	relpMaxAnswer = 64 << 10
	// relpCloseTimeout bounds the wait for the answer to "close".
	relpCloseTimeout = 5 * time.Second
)

// relpOffers are what this client asks of a session: RELP as librelp
// speaks it (version 0) and the syslog command.
func relpOffers(version string) []byte {
	return fmt.Appendf(nil, "relp_version=0\nrelp_software=siem-recovery,%s\ncommands=syslog", version)
}

// relpSink delivers to a RELP receiver: each message is a "syslog" command
// that the receiver acknowledges once it has taken the message in. Up to
// window messages are sent ahead of their acknowledgement, or of their
// record in the checkpoint when the batch's acknowledgements are recorded
// (recovery.Acknowledger). When the session breaks, a new one is opened
// after backoff and exactly the messages not acknowledged are sent again.
// The session lasts from batch to batch; Send returns once every message
// of its batch is acknowledged.
type relpSink struct {
	mu           sync.Mutex
	dial         func(context.Context) (net.Conn, error)
	enc          *encoder
	retry        reconnector
	offers       []byte
	window       int
	openTimeout  time.Duration // for the answer to "open"
	ackTimeout   time.Duration // for the oldest message's acknowledgement
	writeTimeout time.Duration

	sess   *relpSession // nil until opened, and once broken
	own    frames       // for batches Send formats itself
	out    []byte       // frames on their way to the connection
	outEnd []int        // outEnd[i] is the offset just after frame i of out
}

// relpProgress is how far the messages of one batch got: the first acked
// are acknowledged, the first written were (at least partly) handed to
// the connection.
type relpProgress struct {
	msgs           *frames
	acks           recovery.Acks // told the acknowledgements; nil: nobody records them
	acked, written int
}

// limit is how many messages of the batch may be written: window past the
// acknowledged ones, and, when they are recorded, past the recorded ones.
// grown is closed once more are recorded (nil: nothing to wait for).
func (p *relpProgress) limit(window int) (n int, grown <-chan struct{}) {
	if p.acks == nil {
		return p.acked + window, nil
	}
	recorded, grown := p.acks.Recorded()
	return min(recorded, p.acked) + window, grown
}

func newRELPSink(target string, enc *encoder, opts Options, dial func(context.Context) (net.Conn, error)) *relpSink {
	return &relpSink{
		dial:         dial,
		enc:          enc,
		retry:        newReconnector(target, opts, true),
		offers:       relpOffers(opts.Version),
		window:       opts.RELPWindow,
		openTimeout:  opts.DialTimeout,
		ackTimeout:   opts.ConfirmTimeout,
		writeTimeout: opts.WriteTimeout,
	}
}

// Send delivers the batch and returns once the receiver acknowledged every
// message of it, retrying until ctx is done; it tells b.Acks the
// acknowledgements as they come. resent counts the messages sent again on
// a new session because the broken one had carried them without their
// acknowledgement.
func (s *relpSink) Send(ctx context.Context, b recovery.Batch) (resent int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(b.Activities) == 0 {
		return 0, nil
	}
	p := relpProgress{msgs: framesOf(s.enc, b, &s.own), acks: b.Acks}
	defer s.own.forget()
	err = s.retry.do(ctx, func() error {
		resent += p.written - p.acked // those go out again on this attempt
		p.written = p.acked
		return s.deliver(ctx, &p)
	})
	return resent, err
}

// Prepare formats batch ahead of its Send (recovery.Preparer).
func (s *relpSink) Prepare(reuse recovery.Prepared, batch []recovery.Activity) recovery.Prepared {
	return prepare(s.enc, reuse, batch)
}

// AckWindow is how many messages the sink sends past those recorded
// (recovery.Acknowledger): its window.
func (s *relpSink) AckWindow() int { return s.window }

// deliver makes one attempt: open a session if there is none, then send
// the messages from the first unacknowledged one on, window by window,
// until all are acknowledged. A failure drops the session.
func (s *relpSink) deliver(ctx context.Context, p *relpProgress) error {
	if s.sess != nil && s.sess.ended() {
		// The receiver closed the idle session (a restart, an idle
		// timeout): nothing was outstanding, so open another quietly.
		s.sess.close()
		s.sess = nil
	}
	if s.sess == nil {
		sess, err := s.open(ctx)
		if err != nil {
			return err
		}
		s.sess = sess
	}
	if err := s.pump(ctx, s.sess, p); err != nil {
		// Acknowledgements that came in before the break still count:
		// those messages are not sent again.
		s.collect(ctx, s.sess, p, false, nil)
		s.sess.close()
		s.sess = nil
		return err
	}
	return nil
}

// pump writes what the window allows and takes the acknowledgements in,
// until the receiver acknowledged the whole batch.
func (s *relpSink) pump(ctx context.Context, c *relpSession, p *relpProgress) error {
	g := &deadlines{conn: c.conn}
	defer context.AfterFunc(ctx, g.cancel)()
	n := p.msgs.count()
	for p.acked < n {
		limit, grown := p.limit(s.window)
		if p.written < min(n, limit) {
			if err := s.write(c, g, p, min(n, limit)); err != nil {
				return err
			}
		}
		// Wait only when nothing more may be written; else take the
		// acknowledgements already there and write on.
		wait := p.written == n || p.written >= limit
		if err := s.collect(ctx, c, p, wait, grown); err != nil {
			return err
		}
	}
	return nil
}

// write sends the next messages up to limit, at most writeChunk bytes of
// frames at once.
func (s *relpSink) write(c *relpSession, g *deadlines, p *relpProgress, limit int) error {
	s.out, s.outEnd = s.out[:0], s.outEnd[:0]
	txnr := c.txnr
	for i := p.written; i < limit && len(s.out) < writeChunk; i++ {
		txnr = nextTxnr(txnr)
		s.out = appendRELPFrame(s.out, txnr, "syslog", p.msgs.frame(i))
		s.outEnd = append(s.outEnd, len(s.out))
	}
	g.set(c.conn.SetWriteDeadline, s.writeTimeout)
	n, err := c.conn.Write(s.out)
	if err != nil {
		// The frames of which a byte left may have reached the receiver.
		p.written += framesStarted(s.outEnd, n)
		return failureOn(s.retry.target, c.conn, stageSend, err)
	}
	p.written += len(s.outEnd)
	c.txnr = txnr
	return nil
}

// collect takes in the acknowledgements that arrived. With wait set it
// first waits for one, or for more of them to be recorded (grown).
func (s *relpSink) collect(ctx context.Context, c *relpSession, p *relpProgress, wait bool, grown <-chan struct{}) error {
	var timer *time.Timer
	for {
		var (
			rsp relpAnswer
			ok  bool
		)
		select {
		case rsp, ok = <-c.answers:
		default:
			if !wait {
				return nil
			}
			var timeout <-chan time.Time
			if p.acked < p.written { // the oldest must be acknowledged in time
				if timer == nil {
					timer = time.NewTimer(s.ackTimeout)
					defer timer.Stop()
				}
				timeout = timer.C
			}
			select {
			case rsp, ok = <-c.answers:
			case <-grown:
				return nil
			case <-ctx.Done():
				return &failure{stage: stageAck, target: s.retry.target, err: ctx.Err()}
			case <-timeout:
				return &failure{stage: stageAck, target: s.retry.target, err: os.ErrDeadlineExceeded}
			}
		}
		if !ok {
			return failureOn(s.retry.target, c.conn, stageAck, c.readErr)
		}
		want := nextTxnr(c.acked)
		if rsp.txnr != want || p.acked >= p.written {
			return &failure{stage: stageAck, target: s.retry.target,
				err: fmt.Errorf("it answered transaction %d where %d was due", rsp.txnr, want)}
		}
		if rsp.code != 200 {
			return &failure{stage: stageAck, target: s.retry.target, err: &relpRefusal{rsp.code, rsp.text}}
		}
		c.acked = want
		p.acked++
		if p.acks != nil {
			p.acks.Acked(p.acked)
		}
		wait = false // an acknowledgement may free the window: look again
	}
}

// open connects and opens a RELP session: the receiver must answer "open"
// with 200, RELP version 0 or 1 and the syslog command among its offers.
func (s *relpSink) open(ctx context.Context) (*relpSession, *failure) {
	conn, err := s.dial(ctx)
	if err != nil {
		return nil, connectFailure(s.retry.target, err)
	}
	c := newRELPSession(conn, s.window)
	fail := func(err error) (*relpSession, *failure) {
		c.close()
		return nil, failureOn(s.retry.target, conn, stageOpen, err)
	}
	g := &deadlines{conn: conn}
	defer context.AfterFunc(ctx, g.cancel)()
	g.set(conn.SetWriteDeadline, s.writeTimeout)
	if _, err := conn.Write(appendRELPFrame(nil, 1, "open", s.offers)); err != nil {
		return fail(err)
	}
	timer := time.NewTimer(s.openTimeout)
	defer timer.Stop()
	var (
		rsp relpAnswer
		ok  bool
	)
	select {
	case rsp, ok = <-c.answers:
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-timer.C:
		return fail(os.ErrDeadlineExceeded)
	}
	switch {
	case !ok:
		return fail(c.readErr)
	case rsp.txnr != 1:
		return fail(fmt.Errorf("it answered transaction %d to the open (1)", rsp.txnr))
	case rsp.code != 200:
		return fail(&relpRefusal{rsp.code, rsp.text})
	}
	if err := checkRELPOffers(rsp.data); err != nil {
		return fail(err)
	}
	c.txnr, c.acked = 1, 1
	return c, nil
}

// checkRELPOffers checks the offers of the receiver's answer to "open".
func checkRELPOffers(data []byte) error {
	version, syslog := "", false
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		name, value, _ := bytes.Cut(line, []byte("="))
		switch string(name) {
		case "relp_version":
			version = string(value)
		case "commands":
			for command := range bytes.SplitSeq(value, []byte(",")) {
				syslog = syslog || string(command) == "syslog"
			}
		}
	}
	switch {
	case version == "":
		return errors.New("its answer to the open offers no relp_version")
	case version != "0" && version != "1":
		return fmt.Errorf("it speaks RELP version %s, this tool 0 and 1", recovery.Escape(version))
	case !syslog:
		return errors.New("it does not accept the syslog command")
	}
	return nil
}

// Close ends the session politely: "close", and its answer awaited for a
// few seconds at most.
func (s *relpSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		return nil
	}
	s.sess.closeSession(s.writeTimeout)
	s.sess = nil
	return nil
}

// Probe opens a session and closes it without sending a message: the
// check command's test that a RELP receiver answers at the target. It
// does not retry.
func (s *relpSink) Probe(ctx context.Context) error {
	c, f := s.open(ctx)
	if f != nil {
		return f.problem()
	}
	c.closeSession(s.writeTimeout)
	return nil
}

// relpSession is one open RELP session. A goroutine reads the receiver's
// frames and hands its answers over in order.
type relpSession struct {
	conn    net.Conn
	answers chan relpAnswer
	done    chan struct{} // closed by close: the reader must not block
	readErr error         // why the reader stopped; read once answers is closed
	txnr    int           // the last transaction number sent
	acked   int           // the last one acknowledged
}

// relpAnswer is an "rsp" frame: the transaction it answers, its status,
// its text and, after the status line, its data.
type relpAnswer struct {
	txnr int
	code int
	text string
	data []byte
}

// relpRefusal is an answer other than 200.
type relpRefusal struct {
	code int
	text string
}

func (r *relpRefusal) Error() string {
	return fmt.Sprintf("it answered %d %s", r.code, recovery.Escape(r.text))
}

// errServerClose is the receiver's "serverclose" hint.
var errServerClose = errors.New("it closed the session")

func newRELPSession(conn net.Conn, window int) *relpSession {
	c := &relpSession{conn: conn, answers: make(chan relpAnswer, window+1), done: make(chan struct{})}
	go c.read()
	return c
}

func (c *relpSession) read() {
	defer close(c.answers)
	r := &relpReader{r: bufio.NewReader(c.conn)}
	for {
		f, err := r.next()
		if err != nil {
			c.readErr = err
			return
		}
		switch {
		case f.txnr == 0 && f.command == "serverclose":
			c.readErr = errServerClose
			return
		case f.command != "rsp":
			c.readErr = fmt.Errorf("it sent the command %s, where only answers are due", recovery.Escape(f.command))
			return
		}
		a, err := parseRELPAnswer(f)
		if err != nil {
			c.readErr = err
			return
		}
		select {
		case c.answers <- a:
		case <-c.done:
			return
		}
	}
}

// ended reports whether the receiver ended the session.
func (c *relpSession) ended() bool {
	select {
	case _, ok := <-c.answers:
		return !ok // an answer nobody waits for would be a protocol error too
	default:
		return false
	}
}

// close drops the connection and lets the reader go.
func (c *relpSession) close() {
	close(c.done)
	c.conn.Close()
	for range c.answers { // the reader has stopped once answers is closed
	}
}

// closeSession sends "close", waits a moment for its answer and drops the
// connection.
func (c *relpSession) closeSession(writeTimeout time.Duration) {
	defer c.close()
	txnr := nextTxnr(c.txnr)
	c.conn.SetWriteDeadline(time.Now().Add(min(writeTimeout, relpCloseTimeout)))
	if _, err := c.conn.Write(appendRELPFrame(nil, txnr, "close", nil)); err != nil {
		return
	}
	timer := time.NewTimer(relpCloseTimeout)
	defer timer.Stop()
	for {
		select {
		case a, ok := <-c.answers:
			if !ok || a.txnr == txnr {
				return
			}
		case <-timer.C:
			return
		}
	}
}

func nextTxnr(t int) int { return t%relpMaxTxnr + 1 }

// appendRELPFrame appends the frame "TXNR COMMAND DATALEN[ DATA]\n".
func appendRELPFrame(dst []byte, txnr int, command string, data []byte) []byte {
	dst = strconv.AppendInt(dst, int64(txnr), 10)
	dst = append(dst, ' ')
	dst = append(dst, command...)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(len(data)), 10)
	if len(data) > 0 {
		dst = append(dst, ' ')
		dst = append(dst, data...)
	}
	return append(dst, '\n')
}

// relpFrame is a frame as read. Its data is valid until the next read.
type relpFrame struct {
	txnr    int
	command string
	data    []byte
}

// relpReader reads the frames a receiver sends.
type relpReader struct {
	r    *bufio.Reader
	data []byte // reused from frame to frame
}

// next reads one frame whose data is at most relpMaxAnswer bytes.
func (rr *relpReader) next() (relpFrame, error) {
	var f relpFrame
	txnr, end, err := rr.number()
	if err != nil {
		return f, err
	}
	if end != ' ' {
		return f, errors.New("it sent a frame that ends after its transaction number")
	}
	command, err := rr.r.ReadSlice(' ')
	if err != nil {
		return f, frameError(err, "the command")
	}
	command = command[:len(command)-1]
	if len(command) == 0 || len(command) > 32 || bytes.IndexFunc(command, notAlpha) >= 0 {
		return f, fmt.Errorf("it sent a frame with the command %s", recovery.Escape(string(command)))
	}
	f.txnr, f.command = txnr, string(command)
	size, end, err := rr.number()
	switch {
	case err != nil:
		return f, err
	case end == '\n' && size == 0:
		return f, nil
	case end == '\n' || size == 0:
		return f, errors.New("it sent a frame whose length does not match its data")
	case size > relpMaxAnswer:
		return f, fmt.Errorf("it sent a %s frame of %d bytes (at most %d expected)", recovery.Escape(f.command), size, relpMaxAnswer)
	}
	if cap(rr.data) < size+1 {
		rr.data = make([]byte, size+1)
	}
	f.data = rr.data[:size+1]
	if _, err := io.ReadFull(rr.r, f.data); err != nil {
		return f, frameError(err, "the data")
	}
	if f.data[size] != '\n' {
		return f, errors.New("it sent a frame that does not end in LF where its length says")
	}
	f.data = f.data[:size]
	return f, nil
}

// number reads 1 to 9 digits and the byte after them, SP or LF.
func (rr *relpReader) number() (n int, end byte, err error) {
	digits := 0
	for {
		c, err := rr.r.ReadByte()
		switch {
		case err == io.EOF && digits == 0:
			return 0, 0, io.EOF // between frames: the receiver closed the connection
		case err != nil:
			return 0, 0, frameError(err, "a number")
		case c >= '0' && c <= '9' && digits < 9:
			n, digits = n*10+int(c-'0'), digits+1
		case digits > 0 && (c == ' ' || c == '\n'):
			return n, c, nil
		default:
			return 0, 0, fmt.Errorf("it sent a frame with %q where a number was due", rune(c))
		}
	}
}

func frameError(err error, what string) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading %s of a frame: %w", what, err)
}

func notAlpha(r rune) bool { return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') }

// parseRELPAnswer reads the data of an "rsp": "CODE[ TEXT][\nDATA]". The
// text is kept only for a refusal, the data only when there is some (the
// offers of the answer to "open").
func parseRELPAnswer(f relpFrame) (relpAnswer, error) {
	a := relpAnswer{txnr: f.txnr}
	if len(f.data) == 0 { // librelp answers "close" so
		a.code = 200
		return a, nil
	}
	status, data, _ := bytes.Cut(f.data, []byte("\n"))
	code, text, _ := bytes.Cut(status, []byte(" "))
	n, err := strconv.Atoi(string(code))
	if err != nil || len(code) != 3 || code[0] == '+' || code[0] == '-' {
		return a, fmt.Errorf("it answered %s, which starts with no status", recovery.Escape(string(status)))
	}
	a.code = n
	if n != 200 {
		a.text = string(text)
	}
	if len(data) > 0 {
		a.data = bytes.Clone(data)
	}
	return a, nil
}
