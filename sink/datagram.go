package sink

import (
	"context"
	"log/slog"
	"math"
	"net"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"siem-recovery/recovery"
)

// truncatedMark ends every value shortened to fit a datagram.
const truncatedMark = "[truncated]"

// datagramSink sends each activity as one UDP datagram (RFC 5426). UDP has
// no acknowledgement: what the network or a busy receiver drops is lost
// without a trace, so this sink is at-most-once. Pacing (Options.UDPRate)
// keeps a burst from overflowing the receiver's socket buffer.
type datagramSink struct {
	mu           sync.Mutex
	addr         string
	enc          *encoder
	retry        reconnector
	log          *slog.Logger
	dialer       net.Dialer
	writeTimeout time.Duration
	max          int
	pace         *rate.Limiter // nil: unpaced
	conn         net.Conn
	buf          []byte
	sent         int64 // datagrams handed to the network
}

func newDatagramSink(target, addr string, enc *encoder, opts Options) *datagramSink {
	s := &datagramSink{
		addr:         addr,
		enc:          enc,
		retry:        newReconnector(target, opts, false),
		log:          opts.Logger,
		dialer:       net.Dialer{Timeout: opts.DialTimeout},
		writeTimeout: opts.WriteTimeout,
		max:          opts.MaxDatagram,
	}
	if opts.UDPRate > 0 {
		// A burst of 10 ms worth lets the limiter sleep in steps the
		// timer can keep, while staying far below a socket buffer.
		s.pace = rate.NewLimiter(rate.Limit(opts.UDPRate), max(1, opts.UDPRate/100))
	}
	return s
}

// DatagramsSent is how many datagrams the sink has handed to the network:
// what the receiver got can only be checked on its side.
func (s *datagramSink) DatagramsSent() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

// Send sends the batch, one datagram per activity, and returns once each
// was handed to the network. A send the kernel refuses (no route, or an
// ICMP "port unreachable" for an earlier datagram) is retried with backoff
// until ctx is done or a stop is asked. resent is always 0.
func (s *datagramSink) Send(ctx context.Context, b recovery.Batch) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	shortened, firstID := 0, ""
	for _, a := range b.Activities {
		var cut bool
		s.buf, cut = s.fit(s.buf[:0], a)
		if cut {
			if shortened == 0 {
				firstID = a.ID
			}
			shortened++
			s.log.Debug("activity shortened to fit a UDP datagram", "sink", s.retry.target, "id", a.ID, "max_bytes", s.max)
		}
		if err := s.sendOne(ctx); err != nil {
			return 0, err
		}
		s.sent++
	}
	if shortened > 0 {
		s.log.Warn("activities larger than a UDP datagram were shortened to fit; their full text is in the portal (cs1)",
			"sink", s.retry.target, "count", shortened, "first_id", firstID, "max_bytes", s.max)
	}
	return 0, nil
}

func (s *datagramSink) sendOne(ctx context.Context) error {
	if s.pace != nil {
		if err := s.pace.Wait(ctx); err != nil {
			<-ctx.Done() // Wait refuses at once a wait past ctx's deadline
			return s.retry.giveUp(ctx.Err(), err)
		}
	}
	if err := ctx.Err(); err != nil {
		return s.retry.giveUp(err, err)
	}
	return s.retry.do(ctx, func() error {
		if s.conn == nil {
			conn, err := s.dialer.DialContext(ctx, "udp", s.addr)
			if err != nil {
				return &failure{stage: stageConnect, target: s.retry.target, err: err}
			}
			s.conn = conn
		}
		s.conn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
		if _, err := s.conn.Write(s.buf); err != nil {
			return &failure{stage: stageSend, target: s.retry.target, err: err}
		}
		return nil
	})
}

// fit appends a's message, shortened if it is longer than a datagram may
// be. A CEF event keeps every key, its id, times, user, address and portal
// link: the longest free-text values (description, target objects, user
// agent, ...) are cut to a common length, each ending with truncatedMark,
// until the event fits. Only if that is not enough, or for JSON, which
// cannot be shortened and stay the same object, is the message itself cut
// at the limit, on a UTF-8 boundary and never inside a CEF escape, and ends
// with the mark.
func (s *datagramSink) fit(dst []byte, a recovery.Activity) ([]byte, bool) {
	dst = s.enc.appendMessage(dst, a)
	if len(dst) <= s.max {
		return dst, false
	}
	if !s.enc.json {
		// The description is both the header's name and msg: it takes
		// twice its length on the line.
		fields := []cutField{{&a.Description, 2}, {&a.TargetObjects, 1}, {&a.UserAgent, 1}, {&a.PolicyIDs, 1},
			{&a.UniqueServiceAppIDs, 1}, {&a.AppName, 1}, {&a.UserName, 1}}
		for len(dst) > s.max && shareCut(fields, len(dst)-s.max) {
			dst = s.enc.appendMessage(dst[:0], a)
		}
		if len(dst) <= s.max {
			return dst, true
		}
	}
	cut := s.max - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(dst[cut]) {
		cut--
	}
	backslashes := 0
	for i := cut - 1; i >= 0 && dst[i] == '\\'; i-- {
		backslashes++
	}
	cut -= backslashes % 2
	return append(dst[:cut], truncatedMark...), true
}

// cutField is a free-text value fit may shorten, and how many times it is
// on the line.
type cutField struct {
	value *string
	times int
}

// shareCut shortens the longest fields to one common length on the line
// (escapes included), so that together they give up at least excess bytes
// and each keeps truncatedMark: no field is emptied while another stays
// long. It reports false when no field can give any more.
func shareCut(fields []cutField, excess int) bool {
	type candidate struct {
		value   *string
		cost    int     // bytes on the line
		perByte float64 // line bytes per byte of the value
	}
	var cs []candidate
	for _, f := range fields {
		if v := *f.value; len(v) > len(truncatedMark) {
			cost := len(appendExtValue(nil, v)) * f.times
			cs = append(cs, candidate{f.value, cost, float64(cost) / float64(len(v))})
		}
	}
	if len(cs) == 0 {
		return false
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].cost > cs[j].cost })
	// The level the k longest come down to: they give sum-k*level, which
	// must reach excess, and no shorter field may be above it.
	level, sum := 0, 0
	for k := 1; ; k++ {
		sum += cs[k-1].cost
		level = (sum - excess) / k
		if k == len(cs) || level >= cs[k].cost {
			break
		}
	}
	for _, c := range cs {
		if c.cost <= level {
			break
		}
		*c.value = shorten(*c.value, int(math.Ceil(float64(c.cost-level)/c.perByte)))
	}
	return true
}

// shorten cuts at least over bytes off s, on a UTF-8 boundary, and marks
// the cut; a value too short for that becomes the mark alone.
func shorten(s string, over int) string {
	keep := len(s) - over - len(truncatedMark)
	if keep <= 0 {
		return truncatedMark
	}
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + truncatedMark
}

// Close closes the socket.
func (s *datagramSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
