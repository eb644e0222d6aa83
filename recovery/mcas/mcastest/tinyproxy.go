package mcastest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tinyproxy is a real tinyproxy (the Debian package "tinyproxy") running
// in the foreground on 127.0.0.1 for the length of a test, allowing only
// 127.0.0.1 and any CONNECT port.
type Tinyproxy struct {
	// Addr is its host:port, e.g. 127.0.0.1:41235.
	Addr string

	cmd    *exec.Cmd
	out    *logBuffer
	exited chan struct{}
}

// StartTinyproxy starts tinyproxy and waits until it accepts connections;
// it is stopped when the test ends. Without the tinyproxy binary the test
// is skipped, or fails when the CI environment variable is set: CI must
// not pass a proxy test that did not run.
func StartTinyproxy(tb testing.TB) *Tinyproxy {
	tb.Helper()
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("tinyproxy is not installed (apt-get install tinyproxy); CI must run the proxy tests: %v", err)
		}
		tb.Skipf("tinyproxy is not installed (apt-get install tinyproxy): %v", err)
	}
	// A free port can be taken between our probe and tinyproxy's bind:
	// try a few.
	var last string
	for range 3 {
		p, log, ok := startTinyproxy(tb, bin)
		if ok {
			return p
		}
		last = log
	}
	tb.Fatalf("tinyproxy did not start; its output:\n%s", last)
	return nil
}

func startTinyproxy(tb testing.TB, bin string) (*Tinyproxy, string, bool) {
	tb.Helper()
	addr := DeadAddr(tb)
	_, port, _ := net.SplitHostPort(addr)
	dir := tb.TempDir()
	conf := filepath.Join(dir, "tinyproxy.conf")
	// No ConnectPort line: CONNECT is allowed to any port, which the
	// emulator's random HTTPS port needs. No LogFile and no Syslog: in
	// the foreground tinyproxy logs to its standard output.
	text := fmt.Sprintf("Port %s\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nLogLevel Info\nMaxClients 50\n", port)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		tb.Fatalf("write tinyproxy config: %v", err)
	}
	p := &Tinyproxy{Addr: addr, out: newLogBuffer(), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "-d", "-c", conf)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start tinyproxy: %v", err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
		p.out.notify()
	}()
	tb.Cleanup(p.stop)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.out.await(ctx, p.exited, "Accepting connections"); err != nil {
		p.stop()
		return nil, p.Log(), false
	}
	return p, "", true
}

// URL is the proxy as --proxy takes it: http://127.0.0.1:port.
func (p *Tinyproxy) URL() string { return "http://" + p.Addr }

// Log is what tinyproxy has logged so far.
func (p *Tinyproxy) Log() string { return p.out.String() }

// WaitLog waits until tinyproxy's log contains substr, and fails the test
// if it does not within timeout. tinyproxy logs a request before it
// forwards it, but the line may reach us a moment after the answer.
func (p *Tinyproxy) WaitLog(tb testing.TB, substr string, timeout time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.out.await(ctx, p.exited, substr); err != nil {
		tb.Fatalf("tinyproxy never logged %q (%v); its log:\n%s", substr, err, p.Log())
	}
}

func (p *Tinyproxy) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// DeadAddr returns a 127.0.0.1 address where nothing listens: a port that
// was free a moment ago (connecting to it is refused).
func DeadAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		tb.Fatalf("free port %s: %v", addr, err)
	}
	return addr
}

// logBuffer collects a process's output and wakes whoever waits for a
// line in it.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *logBuffer) notify() { _, _ = l.Write(nil) }

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// await returns once the output contains substr, or an error when ctx ends
// or the process exits first.
func (l *logBuffer) await(ctx context.Context, exited <-chan struct{}, substr string) error {
	for {
		l.mu.Lock()
		found := strings.Contains(l.buf.String(), substr)
		changed := l.changed
		l.mu.Unlock()
		if found {
			return nil
		}
		select {
		case <-changed:
		case <-exited:
			if strings.Contains(l.String(), substr) {
				return nil
			}
			return fmt.Errorf("tinyproxy exited")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
