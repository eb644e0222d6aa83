package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// TestProgressBarOnTerminal runs the binary with its stderr on a
// pseudo-terminal, as an operator would, and checks the bar was drawn.
// The bar redraws at most every 200 ms, so the run must last longer than
// that however fast the machine: the receiver holds each of the 100
// batches 10 ms before confirming it.
func TestProgressBarOnTerminal(t *testing.T) {
	dir := t.TempDir()
	writeBigExport(t, filepath.Join(dir, "big.jsonl"), 200_000)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	recv := slowReceiver(t, 10*time.Millisecond)
	cmd := exec.CommandContext(ctx, binary, bigArgs(dir, "--page-size", "2000", "--sink", "tcp://"+recv)...)
	cmd.Env = cleanEnv()
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var screen bytes.Buffer
	_, err = io.Copy(&screen, tty) // until the binary exits and the pty closes
	if err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, screen.String())
	}
	out := screen.String()
	for _, want := range []string{"recovering: ", " sent, ", "/s", "%", "█", "window recovered"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the terminal lacks %q:\n%s", want, out)
		}
	}
}

// TestProgressLogWithoutTerminal: with stderr on a pipe there is no bar,
// and progress comes as log lines.
func TestProgressLogWithoutTerminal(t *testing.T) {
	dir := t.TempDir()
	writeBigExport(t, filepath.Join(dir, "big.jsonl"), 100_000)
	r := runBin(t, dir, nil, bigArgs(dir, "--page-size", "1000", "--progress-interval", "1ns")...)
	wantCode(t, r, 0)
	if strings.Contains(r.stderr, "█") || strings.Contains(r.stderr, "\r") {
		t.Fatalf("a bar was drawn on a pipe:\n%.2000s", r.stderr)
	}
	wantStderr(t, r, "level=INFO msg=progress percent=", "sent=1000 ")
	json := runBin(t, dir, nil, "run", "--start", "2015-01-01T00:00:00Z", "--end", "2015-01-01T00:00:01Z", "--source", "file:big.jsonl", "--checkpoint", "j.db", "--log-format", "json")
	wantCode(t, json, 0)
	wantStderr(t, json, `"level":"INFO","msg":"completed"`)
}

// slowReceiver accepts syslog TCP connections on 127.0.0.1, reads each to
// its end, and closes it only after hold: a SIEM that takes its time to
// confirm. It returns the address.
func slowReceiver(t *testing.T, hold time.Duration) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c)
				time.Sleep(hold)
			}()
		}
	}()
	return l.Addr().String()
}
