package sink

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"siem-recovery/recovery"
	"siem-recovery/sink/rsyslogtest"
)

func TestUDPToRsyslog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.UDP})
	target := "udp://" + srv.Addr
	for _, syslog := range []string{SyslogRFC5424, SyslogRFC3164} {
		t.Run(syslog, func(t *testing.T) {
			before := srv.Count()
			opts := testOptions(t)
			opts.Syslog = syslog
			as := makeActivities(2000)
			for i := range as {
				as[i].ID += "-" + syslog
			}
			deliverAll(ctx, t, target, opts, as, 500)
			// UDP confirms nothing: wait for rsyslog to have written them.
			lines := srv.AwaitCount(before+len(as), netTimeout/2)[before:]
			if dup := compareReceived(t, lines, expected(t, target, opts, as)); dup != 0 {
				t.Errorf("%d duplicates", dup)
			}
		})
	}
}

func TestUDPShortensLargeEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.UDP})
	opts := testOptions(t)
	big := makeActivities(3)
	big[0].Description = strings.Repeat("Très long | a=b ", 400) // 6,800 bytes, twice in the line
	big[1].TargetObjects = strings.Repeat("東京,", 1000)           // 4,000 bytes
	big[2].ID = strings.Repeat("x", 3000)                        // nothing to shorten but the line itself
	s, err := Open(ctx, "udp://"+srv.Addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(ctx, recovery.Batch{Activities: big}); err != nil {
		t.Fatal(err)
	}
	lines := srv.AwaitCount(3, netTimeout/2)
	for i, line := range lines {
		t.Logf("datagram %d: %d bytes", i, len(line))
		if len(line) > DefaultMaxDatagram {
			t.Errorf("datagram %d is %d bytes, over %d", i, len(line), DefaultMaxDatagram)
		}
		if !utf8.Valid(line) {
			t.Errorf("datagram %d cut inside a character", i)
		}
		if !bytes.Contains(line, []byte(truncatedMark)) {
			t.Errorf("datagram %d does not say it was shortened: %s", i, line)
		}
	}
	// Shortened fields leave a whole CEF event: id, keys and portal link.
	for i := range 2 {
		for _, want := range []string{"externalId=" + big[i].ID + " ", " suser=", " cs1=https://contoso.eu2.portal.cloudappsecurity.com/#/audits?activity.id\\=eq(" + big[i].ID + ",) ", ` c6a1Label="Device IPv6 Address" c6a1=`} {
			if !bytes.Contains(lines[i], []byte(want)) {
				t.Errorf("shortened datagram %d lost %q:\n%s", i, want, lines[i])
			}
		}
	}
}

// TestFitSharesTheCut: when several fields are long, fit brings the
// longest down to one common length, so that each shortened field keeps
// its [truncated] mark and none is emptied (golden files under
// testdata/fit/: check every changed line by hand).
func TestFitSharesTheCut(t *testing.T) {
	base := recovery.Activity{ID: "1715673600000_5f0c1a2b", Timestamp: 1715673600000, EventTypeName: "EVENT_CATEGORY_DOWNLOAD_FILE",
		AppName: "Box", UserName: "alice@contoso.com", ClientIP: "198.51.100.7"}
	tests := []struct {
		name  string
		max   int
		edit  func(a *recovery.Activity)
		marks int // [truncated] marks in the result: the header's name and msg count for two
	}{
		{"two-fields", 700, func(a *recovery.Activity) {
			a.Description = strings.Repeat("Downloaded report ", 17) // 306 bytes, twice on the line
			a.TargetObjects = strings.Repeat("file.xlsx,", 50)       // 500 bytes
		}, 3},
		{"four-fields-escaped-and-accented", 900, func(a *recovery.Activity) {
			a.Description = strings.Repeat("Téléchargé a=b | ", 20)
			a.TargetObjects = strings.Repeat("東京\\share,", 60)
			a.UserAgent = strings.Repeat("Mozilla/5.0 (X11; a=b) ", 15)
			a.PolicyIDs = strings.Repeat("policy-0123456789,", 25)
		}, 5},
		{"one-long-field-others-short", 700, func(a *recovery.Activity) {
			a.TargetObjects = strings.Repeat("t", 800)
			a.UserAgent = "curl/8.0 with a somewhat longer agent string" // below the level: untouched
		}, 1},
		{"every-field-down-to-its-mark", 480, func(a *recovery.Activity) {
			a.ID = strings.Repeat("i", 300) // never shortened, and in cs1 too: the line is cut last
			a.Description = strings.Repeat("d", 200)
			a.TargetObjects = strings.Repeat("t", 200)
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := base
			tt.edit(&a)
			s := &datagramSink{enc: &encoder{format: Formatter{Version: "1.2.3", PortalURL: "https://contoso.portal.cloudappsecurity.com"},
				syslog: SyslogRFC5424, hostname: "siem-host", appName: "siem-recovery"}, max: tt.max}
			got, cut := s.fit(nil, a)
			if !cut {
				t.Errorf("fit did not shorten %d bytes to %d", len(s.enc.appendMessage(nil, a)), tt.max)
			}
			checkGolden(t, filepath.Join("testdata", "fit", tt.name+".golden"), got)
			if len(got) > tt.max || !utf8.Valid(got) {
				t.Errorf("%d bytes (max %d), valid UTF-8: %v", len(got), tt.max, utf8.Valid(got))
			}
			if n := bytes.Count(got, []byte(truncatedMark)); n != tt.marks {
				t.Errorf("%d %s marks, want %d: a shortened field lost its mark", n, truncatedMark, tt.marks)
			}
		})
	}
}

// TestUDPRatePacesTheDatagrams: with UDPRate, N datagrams take at least
// (N - burst) / rate seconds (a lower bound that load cannot break), all
// arrive, and the sink counts them.
func TestUDPRatePacesTheDatagrams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.UDP})
	opts := testOptions(t)
	opts.UDPRate = 1000 // burst: 10
	s, err := Open(ctx, "udp://"+srv.Addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	as := makeActivities(300)
	start := time.Now()
	sendAll(ctx, t, s, as, 100)
	if took, least := time.Since(start), 290*time.Millisecond; took < least {
		t.Errorf("300 datagrams at 1000/s took %v, less than %v: not paced", took, least)
	}
	if n := s.(*datagramSink).DatagramsSent(); n != 300 {
		t.Errorf("DatagramsSent %d, want 300", n)
	}
	compareReceived(t, srv.AwaitCount(len(as), netTimeout/2), expected(t, "udp://"+srv.Addr, opts, as))
}

func TestFitNeverSplitsAnEscape(t *testing.T) {
	s := &datagramSink{enc: &encoder{json: false, syslog: SyslogNone}, max: 480}
	a := recovery.Activity{ID: strings.Repeat("\\", 600), Timestamp: 1}
	msg, cut := s.fit(nil, a)
	if !cut || len(msg) > 480 {
		t.Fatalf("fit: %d bytes, cut %v", len(msg), cut)
	}
	body := bytes.TrimSuffix(msg, []byte(truncatedMark))
	trailing := len(body) - len(bytes.TrimRight(body, "\\"))
	if trailing%2 != 0 {
		t.Errorf("cut leaves a lone backslash before the mark: ...%q", msg[len(msg)-20:])
	}
}

func TestFitCutsJSONAtTheLimit(t *testing.T) {
	s := &datagramSink{enc: &encoder{json: true, syslog: SyslogRFC5424, hostname: "h", appName: "a"}, max: 480}
	raw := `{"_id":"j","timestamp":1,"description":"` + strings.Repeat("é", 400) + `"}`
	msg, cut := s.fit(nil, recovery.Activity{ID: "j", Timestamp: 1, Raw: []byte(raw)})
	if !cut || len(msg) > 480 || !utf8.Valid(msg) || !bytes.HasSuffix(msg, []byte(truncatedMark)) {
		t.Errorf("fit: cut %v, %d bytes, %q", cut, len(msg), msg)
	}
	small := `{"_id":"j","timestamp":1}`
	msg, cut = s.fit(nil, recovery.Activity{ID: "j", Timestamp: 1, Raw: []byte(small)})
	if cut || !bytes.HasSuffix(msg, []byte(small)) {
		t.Errorf("a small message was changed: %q", msg)
	}
}

func TestUDPReceiverDownIsLoggedOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().String()
	conn.Close() // nothing listens there: the kernel answers ICMP port unreachable
	var logs logRecorder
	opts := testOptions(t)
	opts.InitialBackoff, opts.MaxBackoff = time.Millisecond, 5*time.Millisecond
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s, err := Open(ctx, "udp://"+addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// UDP cannot tell what was lost: Send goes on, at most once.
	if _, err := s.Send(ctx, recovery.Batch{Activities: makeActivities(20)}); err != nil {
		t.Fatal(err)
	}
	lines := logs.lines()
	if len(lines) != 1 || !strings.Contains(lines[0], "Data server connection error: udp://"+addr+" does not take datagrams (connection refused); those sent meanwhile are lost") {
		t.Errorf("want the refusal logged once, got:\n%s", strings.Join(lines, ""))
	}
}
