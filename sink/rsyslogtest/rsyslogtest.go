// Package rsyslogtest runs a real rsyslogd on loopback for tests, the way
// net/http/httptest runs an HTTP server: in the foreground, with its own
// configuration, work directory and output file, on a port chosen at run
// time, and only on 127.0.0.1. It records every message it receives, raw
// (%rawmsg%: as sent, without the framing), one per line, so a test can
// compare what arrived with what was sent byte for byte.
//
// It needs the Debian packages rsyslog and, for TLS, rsyslog-gnutls, for
// RELP, rsyslog-relp. When one is missing a test is skipped, except under
// CI (the CI environment variable set), where it fails.
package rsyslogtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Transports a Server listens on.
const (
	TCP  = "tcp"  // imtcp, LF or octet-counted frames
	UDP  = "udp"  // imudp
	TLS  = "tls"  // imtcp with the gtls stream driver
	RELP = "relp" // imrelp
	// RELPTLS is imrelp with tls="on": librelp always checks the client's
	// certificate (here against the PKI's CA, authMode certvalid), so the
	// client needs one.
	RELPTLS = "relp+tls"
)

// Config says what the Server listens on.
type Config struct {
	// Transport is TCP, UDP, TLS, RELP or RELPTLS.
	Transport string
	// PKI is required for TLS and RELPTLS: the server presents
	// PKI.ServerCert.
	PKI *PKI
	// RequireClientCert makes the TLS server demand a client certificate
	// signed by the PKI's CA.
	RequireClientCert bool
}

// Server is a running rsyslogd.
type Server struct {
	// Addr is the 127.0.0.1:port it listens on.
	Addr string
	// Output is the file every received message is appended to, raw, one
	// per line.
	Output string

	t       testing.TB
	bin     string
	dir     string
	conf    string
	pidFile string
	errLog  string
	proto   string // "tcp" or "udp", for the readiness check
	port    int
	cmd     *exec.Cmd
	exited  chan struct{}

	// What Count has read of Output so far: its first counted bytes hold
	// lines lines.
	counted int64
	lines   int
}

// packages are the Debian packages the transports need.
const packages = "rsyslog, rsyslog-gnutls and rsyslog-relp"

// StartTimeout bounds how long rsyslogd may take to listen.
const StartTimeout = 15 * time.Second

// Binary returns the path of rsyslogd, skipping the test (failing it under
// CI) when it is not installed.
func Binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("rsyslogd"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/rsyslogd", "/sbin/rsyslogd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	missing(t, "rsyslogd is not installed")
	return ""
}

// missing skips the test, or fails it under CI, for want of a package.
func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(what + " (Debian packages " + packages + "); CI must install them")
	}
	t.Skip(what + " (Debian packages " + packages + ")")
}

// NeedModule checks that rsyslog's input module name (imrelp.so, from
// rsyslog-relp) is installed, skipping the test (failing it under CI)
// when it is not: rsyslogd would refuse a configuration that loads it.
func NeedModule(t testing.TB, name string) {
	t.Helper()
	for _, pattern := range []string{"/usr/lib/*/rsyslog/", "/usr/lib/rsyslog/", "/usr/lib64/rsyslog/"} {
		if found, _ := filepath.Glob(pattern + name + ".so"); len(found) > 0 {
			return
		}
	}
	missing(t, "rsyslog's module "+name+" is not installed")
}

// Start starts rsyslogd as cfg says and waits until it listens. It is
// stopped when the test ends; if the test failed, its own log is printed.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir()}
	if cfg.Transport == RELP || cfg.Transport == RELPTLS {
		NeedModule(t, "imrelp")
	}
	s.Output = filepath.Join(s.dir, "received.log")
	s.conf = filepath.Join(s.dir, "rsyslog.conf")
	s.pidFile = filepath.Join(s.dir, "rsyslogd.pid")
	s.errLog = filepath.Join(s.dir, "rsyslogd.stderr")
	work := filepath.Join(s.dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	s.proto = "tcp"
	if cfg.Transport == UDP {
		s.proto = "udp"
	}
	s.port = FreePort(t, s.proto)
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	conf, err := config(cfg, work, s.port, s.Output)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stop(syscall.SIGKILL)
		if t.Failed() {
			log, _ := os.ReadFile(s.errLog)
			t.Logf("rsyslogd configuration:\n%s\nrsyslogd output:\n%s", conf, log)
		}
	})
	s.Restart()
	return s
}

// config is the rsyslog configuration: one input, every message appended
// raw to out. The main queue is Direct, so a message is written to out by
// the thread that received it, before rsyslog reads further from the same
// connection: when rsyslog closes a connection after its end, everything
// on it is in out. Control characters are kept as received.
func config(cfg Config, work string, port int, out string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "global(workDirectory=%q maxMessageSize=\"64k\" parser.escapeControlCharactersOnReceive=\"off\"", work)
	if cfg.Transport == TLS {
		if cfg.PKI == nil {
			return "", errors.New("rsyslogtest: TLS needs a PKI")
		}
		fmt.Fprintf(&b, "\n  defaultNetstreamDriver=\"gtls\" defaultNetstreamDriverCAFile=%q defaultNetstreamDriverCertFile=%q defaultNetstreamDriverKeyFile=%q",
			cfg.PKI.CAFile, cfg.PKI.ServerCertFile, cfg.PKI.ServerKeyFile)
	}
	b.WriteString(")\n")
	b.WriteString("main_queue(queue.type=\"Direct\")\n")
	b.WriteString("template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n")
	fmt.Fprintf(&b, "ruleset(name=\"received\") {\n  action(type=\"omfile\" file=%q template=\"raw\")\n}\n", out)
	switch cfg.Transport {
	case TCP:
		b.WriteString("module(load=\"imtcp\")\n")
		fmt.Fprintf(&b, "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"received\")\n", port)
	case TLS:
		auth := "anon"
		if cfg.RequireClientCert {
			auth = "x509/certvalid"
		}
		fmt.Fprintf(&b, "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=%q)\n", auth)
		fmt.Fprintf(&b, "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"received\")\n", port)
	case RELP:
		b.WriteString("module(load=\"imrelp\")\n")
		fmt.Fprintf(&b, "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"received\")\n", port)
	case RELPTLS:
		if cfg.PKI == nil {
			return "", errors.New("rsyslogtest: RELP over TLS needs a PKI")
		}
		b.WriteString("module(load=\"imrelp\")\n")
		fmt.Fprintf(&b, "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"received\"\n", port)
		fmt.Fprintf(&b, "  tls=\"on\" tls.caCert=%q tls.myCert=%q tls.myPrivKey=%q tls.authMode=\"certvalid\")\n",
			cfg.PKI.CAFile, cfg.PKI.ServerCertFile, cfg.PKI.ServerKeyFile)
	case UDP:
		b.WriteString("module(load=\"imudp\")\n")
		fmt.Fprintf(&b, "input(type=\"imudp\" address=\"127.0.0.1\" port=\"%d\" rcvbufSize=\"16m\" ruleset=\"received\")\n", port)
	default:
		return "", fmt.Errorf("rsyslogtest: unknown transport %q", cfg.Transport)
	}
	return b.String(), nil
}

// Restart starts rsyslogd again after Kill or Stop, on the same port and
// appending to the same Output; on a running Server it does nothing.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		return
	}
	os.Remove(s.pidFile) // a killed rsyslogd leaves it behind
	errLog, err := os.OpenFile(s.errLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer errLog.Close()
	cmd := exec.Command(s.bin, "-n", "-f", s.conf, "-i", s.pidFile)
	cmd.Stdout, cmd.Stderr = errLog, errLog
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start rsyslogd: %v", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(s.exited)
	deadline := time.Now().Add(StartTimeout)
	for !listening(s.proto, s.port) {
		select {
		case <-s.exited:
			log, _ := os.ReadFile(s.errLog)
			s.cmd = nil
			s.t.Fatalf("rsyslogd exited at start (%v):\n%s", cmd.ProcessState, log)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("rsyslogd does not listen on %s/%s after %v", s.Addr, s.proto, StartTimeout)
		}
	}
}

// Pause stops rsyslogd where it is (SIGSTOP): it reads and answers
// nothing more until Kill (or Stop) ends it.
func (s *Server) Pause() {
	if s.cmd != nil {
		freeze(s.cmd.Process)
	}
}

// Kill kills rsyslogd as a crash would, at one instant, and waits for it
// to be gone. It is stopped (SIGSTOP) before the SIGKILL: a SIGKILL alone
// can land inside a write to Output, which the kernel then cuts at a page
// boundary, leaving a torn line that only the kill made.
func (s *Server) Kill() {
	s.t.Helper()
	s.Pause()
	s.stop(syscall.SIGKILL)
}

// Stop stops rsyslogd with SIGTERM, letting it shut down cleanly, and
// waits for it to be gone.
func (s *Server) Stop() { s.t.Helper(); s.stop(syscall.SIGTERM) }

func (s *Server) stop(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Lines returns what rsyslogd has written so far, one message per line
// (a partly written last line is left out).
func (s *Server) Lines() [][]byte {
	s.t.Helper()
	data, err := os.ReadFile(s.Output)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		s.t.Fatal(err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	} else {
		return nil
	}
	return bytes.Split(data, []byte("\n"))
}

// Count returns how many complete lines Output holds, without keeping
// them. It reads only what was added since its last call, so that polling
// a large output stays cheap.
func (s *Server) Count() int {
	s.t.Helper()
	f, err := os.Open(s.Output)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	for {
		n, err := f.ReadAt(buf, s.counted)
		s.lines += bytes.Count(buf[:n], []byte("\n"))
		s.counted += int64(n)
		if err == io.EOF {
			return s.lines
		}
		if err != nil {
			s.t.Fatal(err)
		}
	}
}

// AwaitCount polls Output until it holds at least n lines and returns
// them, failing the test after timeout.
func (s *Server) AwaitCount(n int, timeout time.Duration) [][]byte {
	s.t.Helper()
	s.Await(n, timeout)
	return s.Lines()
}

// Await polls Output until it holds at least n lines, failing the test
// after timeout. It returns as soon as they are there: a test that acts
// on rsyslog in the middle of a stream calls it, not AwaitCount.
func (s *Server) Await(n int, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if c := s.Count(); c >= n {
			return
		} else if time.Now().After(deadline) {
			s.t.Fatalf("rsyslogd wrote %d messages, want %d, after %v", c, n, timeout)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not a wait for a guess
	}
}

// FreePort finds a port free on 127.0.0.1 for proto ("tcp" or "udp").
func FreePort(t testing.TB, proto string) int {
	t.Helper()
	if proto == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// listening reports whether a socket is bound to 127.0.0.1:port (and, for
// TCP, listening), read from /proc/net so that checking opens no
// connection the server would log.
func listening(proto string, port int) bool {
	data, err := os.ReadFile("/proc/net/" + proto)
	if err != nil {
		return false
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[1] != want {
			continue
		}
		if proto == "udp" || f[3] == "0A" { // 0A: TCP_LISTEN
			return true
		}
	}
	return false
}
