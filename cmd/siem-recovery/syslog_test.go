package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"siem-recovery/sink/rsyslogtest"
)

// TestRunExampleIntoRsyslog runs the README's example into a real rsyslog
// over TCP, with RFC 5424 headers, and checks every id arrived once.
func TestRunExampleIntoRsyslog(t *testing.T) {
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TCP})
	dir := t.TempDir()
	r := runBin(t, dir, nil, exampleArgs(t, dir, "--sink", "tcp://"+srv.Addr)...)
	wantCode(t, r, 0)
	wantIDs, _ := exampleLines(t, nil)
	var got []string
	for _, line := range srv.Lines() {
		if !bytes.HasPrefix(line, []byte("<134>1 2024-05-14T0")) || !bytes.Contains(line, []byte(" siem-recovery - - - CEF:0|MCAS|SIEM_Agent|"+version+"|")) {
			t.Fatalf("not an RFC 5424 CEF message of the window: %q", line)
		}
		got = append(got, cefIDs(t, string(line))...)
	}
	if !slices.Equal(got, wantIDs) {
		t.Fatalf("rsyslog got %d ids, want the window's %d in order", len(got), len(wantIDs))
	}
}

// TestSinkDownThenBack: the receiver is down when the run starts. The run
// waits (pulling nothing more), logs the MCAS "Data server connection
// error" with its remedy once, shows it in status as the last error, and
// delivers everything once rsyslog is up.
func TestSinkDownThenBack(t *testing.T) {
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TCP})
	srv.Stop()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, exampleArgs(t, dir, "--sink", "tcp://"+srv.Addr)...)
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	st := awaitStatus(ctx, t, dir, filepath.Join(dir, "cp.db"), func(s statusReport) bool { return s.LastError != "" })
	want := "Data server connection error: cannot connect to tcp://" + srv.Addr + ": connection refused; check the server name and port of the syslog server and that no firewall blocks it"
	if st.LastError != want || st.Sent != 0 || !st.RunActive || st.State != "running" {
		t.Fatalf("status while the receiver is down: %+v\nwant last error %q", st, want)
	}
	srv.Restart()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if n := strings.Count(stderr.String(), "Data server connection error"); n != 1 {
		t.Fatalf("the failure was logged %d times, want once:\n%s", n, stderr.String())
	}
	if !strings.Contains(stderr.String(), "Data server connection restored") {
		t.Fatalf("no recovery logged:\n%s", stderr.String())
	}
	wantIDs, _ := exampleLines(t, nil)
	if got := cefIDs(t, string(bytes.Join(srv.Lines(), []byte("\n")))); !slices.Equal(got, wantIDs) {
		t.Fatalf("rsyslog got %d ids, want %d", len(got), len(wantIDs))
	}
}

// TestSinkDownMaxDuration: with the receiver down until --max-duration, the
// run stops with exit 75 and nothing counted as sent.
func TestSinkDownMaxDuration(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	dir := t.TempDir()
	r := runBin(t, dir, nil, exampleArgs(t, dir, "--sink", "tcp://"+addr, "--max-duration", "1500ms")...)
	wantCode(t, r, exitStopped)
	wantStderr(t, r, "Data server connection error: cannot connect to tcp://"+addr+": connection refused",
		"Stopped before the end date: stopped at the start of the window with 0.0% of the window done (0 sent in all)")
	st := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
	if st.Sent != 0 || st.InFlight != 102 || !strings.HasPrefix(st.LastError, "Data server connection error") {
		t.Fatalf("status: %+v", st)
	}
}

// TestCheckSink: check reports a reachable TLS receiver OK (handshake
// verified against the test CA) and a dead one as a Data server connection
// error, without sending anything.
func TestCheckSink(t *testing.T) {
	pki := rsyslogtest.NewPKI(t)
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TLS, PKI: pki})
	dir := t.TempDir()
	writeFile(t, dir, "alert.json", goodAlert)
	writeFile(t, dir, "export.jsonl", goodExport)
	args := []string{"check", "--alert", "alert.json", "--source", "file:export.jsonl", "--checkpoint", "cp.db", "--ca-file", pki.CAFile}
	ok := runBin(t, dir, nil, append(args, "--sink", "tls://"+srv.Addr)...)
	wantCode(t, ok, 0)
	if !strings.Contains(ok.stdout, "OK  sink        tls://"+srv.Addr+": reachable") {
		t.Fatalf("check:\n%s", ok.stdout)
	}
	srv.Stop()
	down := runBin(t, dir, nil, append(args, "--sink", "tls://"+srv.Addr)...)
	wantCode(t, down, exitGeneral)
	want := "FAIL  sink        General error during bootstrap: Data server connection error: cannot connect to tls://" + srv.Addr +
		": connection refused; check the server name and port of the syslog server and that no firewall blocks it"
	if !strings.Contains(down.stdout, want+"\n") { // the sink's remedy, and no other after it
		t.Fatalf("check with the receiver down:\n%s\nwant a line %q", down.stdout, want)
	}
	if len(srv.Lines()) != 0 {
		t.Fatal("check sent something")
	}
}
