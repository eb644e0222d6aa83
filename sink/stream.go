package sink

import (
	"context"
	"errors"
	"io"
	"net"
	"sort"
	"sync"
	"time"

	"siem-recovery/recovery"
)

// writeChunk is how much of a batch one Write hands the kernel, so the
// write deadline measures progress rather than the whole batch.
const writeChunk = 256 << 10

// streamSink delivers to a syslog receiver over TCP or TLS. Each batch goes
// on its own connection, confirmed before Send returns:
//
//  1. write every frame of the batch;
//  2. half-close (TLS close_notify, then TCP FIN) and read until the
//     receiver closes its side: a receiver such as rsyslog does so only
//     once it has read and processed everything before our FIN;
//  3. connect once more: a receiver that died while processing the end of
//     the batch closes our connection just as if it had finished, but it
//     no longer accepts connections, so this probe tells the two apart.
//
// Any failure sends the whole batch again on a new connection, after
// backoff; the frames the failed attempt had started to write are counted
// as resent. See docs/delivery.md.
type streamSink struct {
	mu             sync.Mutex
	dial           func(context.Context) (net.Conn, error)
	enc            *encoder
	retry          reconnector
	writeTimeout   time.Duration
	confirmTimeout time.Duration
	own            frames // for batches Send formats itself
}

func newStreamSink(target string, enc *encoder, opts Options, dial func(context.Context) (net.Conn, error)) *streamSink {
	return &streamSink{
		dial:           dial,
		enc:            enc,
		retry:          newReconnector(target, opts, true),
		writeTimeout:   opts.WriteTimeout,
		confirmTimeout: opts.ConfirmTimeout,
	}
}

// Send delivers the batch and returns once the receiver confirmed it,
// retrying until ctx is done.
func (s *streamSink) Send(ctx context.Context, b recovery.Batch) (resent int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(b.Activities) == 0 {
		return 0, nil
	}
	f := framesOf(s.enc, b, &s.own)
	defer s.own.forget()
	err = s.retry.do(ctx, func() error {
		written, err := s.deliver(ctx, f)
		if err != nil {
			resent += f.started(written)
		}
		return err
	})
	return resent, err
}

// Prepare formats batch ahead of its Send (recovery.Preparer), so that the
// formatting overlaps the delivery of the batch before.
func (s *streamSink) Prepare(reuse recovery.Prepared, batch []recovery.Activity) recovery.Prepared {
	return prepare(s.enc, reuse, batch)
}

// framesStarted counts the frames of which at least the first byte is
// among the first n bytes written, ends[i] being the offset just after
// frame i: those the receiver may have got.
func framesStarted(ends []int, n int) int {
	if n <= 0 {
		return 0
	}
	return min(len(ends), sort.SearchInts(ends, n)+1)
}

// deliver makes one attempt to deliver f: connect, write, confirm,
// probe. It returns how many bytes of it were handed to the connection.
func (s *streamSink) deliver(ctx context.Context, f *frames) (written int, err error) {
	conn, err := s.dial(ctx)
	if err != nil {
		return 0, connectFailure(s.retry.target, err)
	}
	defer conn.Close()
	g := &deadlines{conn: conn}
	defer context.AfterFunc(ctx, g.cancel)()

	for chunk := range f.chunks() {
		g.set(conn.SetWriteDeadline, s.writeTimeout)
		n, err := conn.Write(chunk)
		written += n
		if err != nil {
			return written, failureOn(s.retry.target, conn, stageSend, err)
		}
	}
	if err := s.confirm(conn, g); err != nil {
		return written, failureOn(s.retry.target, conn, stageConfirm, err)
	}
	probe, err := s.dial(ctx)
	if err != nil {
		f := connectFailure(s.retry.target, err)
		f.stage = stageProbe
		return written, f
	}
	probe.Close()
	return written, nil
}

// confirm says "end of batch" and waits, up to the confirm timeout, for
// the receiver to close its side: it has then read everything.
func (s *streamSink) confirm(conn net.Conn, g *deadlines) error {
	if err := closeWrite(conn); err != nil {
		return err
	}
	g.set(conn.SetReadDeadline, s.confirmTimeout)
	_, err := io.Copy(io.Discard, conn)
	return err
}

// failureOn is a failure on a connection open to target.
func failureOn(target string, conn net.Conn, stage string, err error) *failure {
	f := &failure{stage: stage, target: target, err: err}
	if c, ok := conn.(*tlsConn); ok {
		f.certRequested = c.certRequested
	}
	return f
}

// connectFailure is the failure of a dial to target: of the TCP
// connection, or of the TLS handshake after it.
func connectFailure(target string, err error) *failure {
	f := &failure{stage: stageConnect, target: target, err: err}
	var h *handshakeError
	if errors.As(err, &h) {
		f.stage, f.err, f.certRequested = stageHandshake, h.err, h.certRequested
	}
	return f
}

// closeWrite says "end of batch" to the receiver and keeps the reading
// side open for its answer.
func closeWrite(conn net.Conn) error {
	if c, ok := conn.(interface {
		CloseWrite() error
		NetConn() net.Conn
	}); ok { // TLS
		if err := c.CloseWrite(); err != nil {
			return err
		}
		conn = c.NetConn() // a TLS receiver may wait for the TCP FIN, too
	}
	if c, ok := conn.(interface{ CloseWrite() error }); ok {
		return c.CloseWrite()
	}
	return nil
}

// deadlines sets a connection's deadlines so that a cancelled ctx wins:
// once cancel ran, every deadline is in the past and blocked I/O returns.
type deadlines struct {
	mu        sync.Mutex
	conn      net.Conn
	cancelled bool
}

func (g *deadlines) set(setDeadline func(time.Time) error, timeout time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := time.Now().Add(timeout)
	if g.cancelled {
		t = time.Unix(1, 0)
	}
	setDeadline(t)
}

func (g *deadlines) cancel() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cancelled = true
	g.conn.SetDeadline(time.Unix(1, 0))
}

// Close releases nothing: no connection outlives a Send.
func (s *streamSink) Close() error { return nil }

// Probe delivers an empty batch: it connects (TLS handshake included),
// says "end of batch" at once and waits for the receiver to close its
// side. That is the check command's test of the route to the receiver and
// of its TLS verdict (with TLS 1.3 a refused client certificate shows only
// after the handshake). It sends nothing and does not retry.
func (s *streamSink) Probe(ctx context.Context) error {
	conn, err := s.dial(ctx)
	if err != nil {
		return connectFailure(s.retry.target, err).problem()
	}
	defer conn.Close()
	g := &deadlines{conn: conn}
	defer context.AfterFunc(ctx, g.cancel)()
	if err := s.confirm(conn, g); err != nil {
		return failureOn(s.retry.target, conn, stageConfirm, err).problem()
	}
	return nil
}
