package sink

import (
	"context"
	"log/slog"
	"math"
	"net"
	"sync"
	"time"
	"unicode/utf8"

	"siem-recovery/recovery"
)

// truncatedMark ends every value shortened to fit a datagram.
const truncatedMark = "[truncated]"

// datagramSink sends each activity as one UDP datagram (RFC 5426). UDP has
// no acknowledgement: what the network or a busy receiver drops is lost
// without a trace, so this sink is at-most-once.
type datagramSink struct {
	mu           sync.Mutex
	addr         string
	enc          *encoder
	retry        reconnector
	log          *slog.Logger
	dialer       net.Dialer
	writeTimeout time.Duration
	max          int
	conn         net.Conn
	buf          []byte
}

func newDatagramSink(target, addr string, enc *encoder, opts Options) *datagramSink {
	return &datagramSink{
		addr:         addr,
		enc:          enc,
		retry:        newReconnector(target, opts, false),
		log:          opts.Logger,
		dialer:       net.Dialer{Timeout: opts.DialTimeout},
		writeTimeout: opts.WriteTimeout,
		max:          opts.MaxDatagram,
	}
}

// Send sends the batch, one datagram per activity, and returns once each
// was handed to the network. A send the kernel refuses (no route, or an
// ICMP "port unreachable" for an earlier datagram) is retried with backoff
// until ctx is done. resent is always 0.
func (s *datagramSink) Send(ctx context.Context, batch []recovery.Activity) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	shortened, firstID := 0, ""
	for _, a := range batch {
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
	}
	if shortened > 0 {
		s.log.Warn("activities larger than a UDP datagram were shortened to fit; their full text is in the portal (cs1)",
			"sink", s.retry.target, "count", shortened, "first_id", firstID, "max_bytes", s.max)
	}
	return 0, nil
}

func (s *datagramSink) sendOne(ctx context.Context) error {
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
// agent, ...) are cut, each ending with truncatedMark, until the event
// fits. Only if that is not enough, or for JSON, which cannot be shortened
// and stay the same object, is the message itself cut at the limit, on a
// UTF-8 boundary and never inside a CEF escape, and ends with the mark.
func (s *datagramSink) fit(dst []byte, a recovery.Activity) ([]byte, bool) {
	dst = s.enc.appendMessage(dst, a)
	if len(dst) <= s.max {
		return dst, false
	}
	if !s.enc.json {
		// The description is both the header's name and msg: cutting it
		// by half the excess shortens the line by all of it.
		fields := []struct {
			value *string
			times int
		}{{&a.Description, 2}, {&a.TargetObjects, 1}, {&a.UserAgent, 1}, {&a.PolicyIDs, 1},
			{&a.UniqueServiceAppIDs, 1}, {&a.AppName, 1}, {&a.UserName, 1}}
		for len(dst) > s.max {
			longest := fields[0]
			for _, f := range fields[1:] {
				if len(*f.value)*f.times > len(*longest.value)*longest.times {
					longest = f
				}
			}
			if *longest.value == "" {
				break
			}
			// Escapes make a value longer on the line than it is: cut
			// only as much of it as the line is too long.
			v := *longest.value
			perByte := float64(len(appendExtValue(nil, v))*longest.times) / float64(len(v))
			cut := int(math.Ceil(float64(len(dst)-s.max) / perByte))
			*longest.value = shorten(v, cut)
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

// shorten cuts at least over bytes off s, on a UTF-8 boundary, and marks
// the cut. A value too short to hold the mark after the cut becomes empty.
func shorten(s string, over int) string {
	keep := len(s) - over - len(truncatedMark)
	if keep <= 0 {
		return ""
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
