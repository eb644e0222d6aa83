package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"siem-recovery/sink/rsyslogtest"
)

// TestRunExampleIntoRsyslog runs the README's example into a real rsyslog
// over TCP, over RELP and over RELP inside TLS (with a client
// certificate, which imrelp's TLS always asks for), with RFC 5424 headers,
// and checks every id arrived once, in order; check before reaches the
// receiver and sends nothing.
func TestRunExampleIntoRsyslog(t *testing.T) {
	pki := rsyslogtest.NewPKI(t)
	for _, transport := range []string{rsyslogtest.TCP, rsyslogtest.RELP, rsyslogtest.RELPTLS} {
		t.Run(transport, func(t *testing.T) {
			srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: transport, PKI: pki})
			dir := t.TempDir()
			target := transport + "://" + srv.Addr
			args := exampleArgs(t, dir, "--sink", target)
			if transport == rsyslogtest.RELPTLS {
				args = append(args, "--ca-file", pki.CAFile, "--tls-cert", pki.ClientCertFile, "--tls-key", pki.ClientKeyFile)
			}
			check := runBin(t, dir, nil, append([]string{"check"}, args[1:]...)...)
			wantCode(t, check, 0)
			if !strings.Contains(check.stdout, "OK  sink        "+target+": reachable") {
				t.Fatalf("check:\n%s", check.stdout)
			}
			if n := srv.Count(); n != 0 {
				t.Fatalf("check sent %d messages", n)
			}
			r := runBin(t, dir, nil, args...)
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
		})
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
	cmd, stderr, done := startBin(ctx, t, exampleArgs(t, dir, "--sink", "tcp://"+srv.Addr)...)
	st := awaitStatus(ctx, t, dir, filepath.Join(dir, "cp.db"), func(s statusReport) bool { return s.LastError != "" })
	want := "Data server connection error: cannot connect to tcp://" + srv.Addr + ": connection refused; check the server name and port of the syslog server and that no firewall blocks it"
	if st.LastError != want || st.Sent != 0 || !st.RunActive || st.State != "running" {
		t.Fatalf("status while the receiver is down: %+v\nwant last error %q", st, want)
	}
	srv.Restart()
	<-done
	if !cmd.ProcessState.Success() {
		t.Fatalf("run: %v\n%s", cmd.ProcessState, stderr.String())
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
// verified against the test CA), and a dead one, an untrusted one and one
// that refuses our missing client certificate each as one Data server
// connection error with its remedy (golden files under
// testdata/check/sink-*), without sending anything.
func TestCheckSink(t *testing.T) {
	t.Parallel()
	pki := rsyslogtest.NewPKI(t)
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TLS, PKI: pki})
	strict := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TLS, PKI: pki, RequireClientCert: true})
	dir := t.TempDir()
	writeFile(t, dir, "alert.json", goodAlert)
	writeFile(t, dir, "export.jsonl", goodExport)
	base := []string{"check", "--alert", "alert.json", "--source", "file:export.jsonl", "--checkpoint", "cp.db"}
	for _, tt := range []struct {
		name string
		srv  *rsyslogtest.Server
		args []string
		code int
	}{
		{"sink-ok", srv, []string{"--ca-file", pki.CAFile}, 0},
		{"sink-untrusted", srv, nil, exitGeneral},
		{"sink-client-certificate", strict, []string{"--ca-file", pki.CAFile}, exitGeneral},
		{"sink-down", srv, []string{"--ca-file", pki.CAFile}, exitGeneral},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "sink-down" {
				srv.Stop()
			}
			r := runBin(t, dir, nil, slices.Concat(base, tt.args, []string{"--sink", "tls://" + tt.srv.Addr})...)
			wantCode(t, r, tt.code)
			golden(t, "check/"+tt.name+"/stdout", strings.ReplaceAll(r.stdout, tt.srv.Addr, "127.0.0.1:PORT"))
			if n := tt.srv.Count(); n != 0 {
				t.Fatalf("check sent %d messages", n)
			}
		})
	}
}

// TestRunRefusedTLS: a receiver that refuses our TLS setup stops the run at
// once with exit 1, one error name and the remedy (golden files under
// testdata/run/sink-*), instead of retrying forever; the checkpoint says
// failed, with the error, and nothing was sent. RELP inside TLS is refused
// the same way when imrelp asks for the client certificate we lack.
func TestRunRefusedTLS(t *testing.T) {
	t.Parallel()
	pki := rsyslogtest.NewPKI(t)
	anon := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TLS, PKI: pki})
	strict := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TLS, PKI: pki, RequireClientCert: true})
	relp := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.RELPTLS, PKI: pki})
	// A certificate with the name in its Common Name only, as the one
	// openssl line the docs had made: no --tls-server-name matches it, and
	// the remedy says a certificate with a subjectAltName is the fix
	// (issue 28: it sent the operator from one --tls-server-name to the
	// next). One with a DNS name only cannot match 127.0.0.1: the remedy
	// names the name.
	cnOnlyPKI := rsyslogtest.NewPKIFor(t, rsyslogtest.ServerNames{CommonName: "localhost"})
	cnOnly := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TLS, PKI: cnOnlyPKI})
	dnsOnlyPKI := rsyslogtest.NewPKIFor(t, rsyslogtest.ServerNames{CommonName: "siem.example", DNSNames: []string{"siem.example"}})
	dnsOnly := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TLS, PKI: dnsOnlyPKI})
	for _, tt := range []struct {
		name string
		srv  *rsyslogtest.Server
		args []string
	}{
		{"sink-untrusted", anon, nil},
		{"sink-name-mismatch", anon, []string{"--ca-file", pki.CAFile, "--tls-server-name", "siem.example"}},
		{"sink-legacy-common-name", cnOnly, []string{"--ca-file", cnOnlyPKI.CAFile}},
		{"sink-legacy-common-name-server-name", cnOnly, []string{"--ca-file", cnOnlyPKI.CAFile, "--tls-server-name", "localhost"}},
		{"sink-no-ip-san", dnsOnly, []string{"--ca-file", dnsOnlyPKI.CAFile}},
		{"sink-client-certificate", strict, []string{"--ca-file", pki.CAFile}},
		{"sink-relp-client-certificate", relp, []string{"--ca-file", pki.CAFile}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			scheme := "tls://"
			if tt.srv == relp {
				scheme = "relp+tls://"
			}
			r := runBin(t, dir, nil, exampleArgs(t, dir, append(tt.args, "--sink", scheme+tt.srv.Addr)...)...)
			wantCode(t, r, exitGeneral)
			last := lastLine(r.stderr)
			golden(t, "run/"+tt.name+"/stderr", strings.NewReplacer(tt.srv.Addr, "127.0.0.1:PORT", dir, "DIR").Replace(last))
			st := statusJSON(t, dir, filepath.Join(dir, "cp.db"))
			if st.State != "failed" || st.Sent != 0 || !strings.Contains(last, st.LastError[strings.Index(st.LastError, ": ")+2:]) {
				t.Fatalf("status after the refusal: %+v", st)
			}
			if n := tt.srv.Count(); n != 0 {
				t.Fatalf("rsyslog got %d messages", n)
			}
		})
	}
}

// TestRunUDPSaysItIsAtMostOnce: a run on udp:// warns once at start that
// UDP is at most once, naming verify --received, and ends by saying how many
// datagrams it sent; check says the same (golden file check/sink-udp).
func TestRunUDPSaysItIsAtMostOnce(t *testing.T) {
	srv := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.UDP})
	dir := t.TempDir()
	target := "udp://" + srv.Addr
	r := runBin(t, dir, nil, exampleArgs(t, dir, "--sink", target)...)
	wantCode(t, r, 0)
	caveat := `level=WARN msg="UDP is at most once: a datagram the network or a busy receiver drops is lost without a trace and never sent again; ` +
		`after the run, check what the SIEM holds with verify --received" sink=` + target + " udp_rate=5000\n"
	sent := `level=INFO msg="sent 102 datagrams to ` + target + `; UDP confirms nothing: verify --received checks what the SIEM got"` + "\n"
	if strings.Count(r.stderr, caveat) != 1 || strings.Count(r.stderr, sent) != 1 {
		t.Fatalf("stderr lacks, or repeats, the UDP caveat or the count:\n%s", r.stderr)
	}
	wantIDs, _ := exampleLines(t, nil)
	lines := srv.AwaitCount(len(wantIDs), time.Minute)
	if got := cefIDs(t, string(bytes.Join(lines, []byte("\n")))); !slices.Equal(got, wantIDs) {
		t.Fatalf("rsyslog got %d ids, want the window's %d in order", len(got), len(wantIDs))
	}

	writeFile(t, dir, "alert.json", goodAlert)
	writeFile(t, dir, "export.jsonl", goodExport)
	c := runBin(t, dir, nil, "check", "--alert", "alert.json", "--source", "file:export.jsonl", "--checkpoint", "cp2.db", "--sink", target)
	wantCode(t, c, 0)
	golden(t, "check/sink-udp/stdout", strings.ReplaceAll(c.stdout, srv.Addr, "127.0.0.1:PORT"))
}
