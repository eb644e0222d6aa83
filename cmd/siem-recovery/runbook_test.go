package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"siem-recovery/sink/rsyslogtest"
)

// runbookRsyslog is the rsyslog configuration the runbook gives, with its
// ports and files changed for this machine.
func runbookRsyslog(t *testing.T, dir string, pki *rsyslogtest.PKI, tcp, tls, relp int) string {
	t.Helper()
	conf := runbookBlock(t, "(?s)```rsyslog\n(.*?)```", "rsyslog configuration")
	return strings.NewReplacer(
		`global(maxMessageSize="64k")`, `global(maxMessageSize="64k" workDirectory="`+dir+`")`,
		`port="514"`, `address="127.0.0.1" port="`+strconv.Itoa(tcp)+`"`,
		`port="6514"`, `address="127.0.0.1" port="`+strconv.Itoa(tls)+`"`,
		`port="2514"`, `address="127.0.0.1" port="`+strconv.Itoa(relp)+`"`,
		"/var/log/mcas/activities.log", filepath.Join(dir, "activities.log"),
		"/etc/rsyslog.d/tls/ca.pem", pki.CAFile,
		"/etc/rsyslog.d/tls/cert.pem", pki.ServerCertFile,
		"/etc/rsyslog.d/tls/key.pem", pki.ServerKeyFile,
	).Replace(conf)
}

// runbookBlock is the first block of the runbook that pattern's group
// matches; what names it for the failure when there is none.
func runbookBlock(t *testing.T, pattern, what string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "docs/runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(pattern).FindStringSubmatch(string(data))
	if m == nil {
		t.Fatalf("the runbook has no %s", what)
	}
	return m[1]
}

// runbookCertificate runs the runbook's recipe for the receiver's TLS
// certificate in dir, as an operator would paste it, with the certificate
// for 127.0.0.1 (and the runbook's own name) and installed in dir; it
// returns the files.
func runbookCertificate(t *testing.T, dir string) *rsyslogtest.PKI {
	t.Helper()
	requireTool(t, "openssl")
	recipe := runbookBlock(t, "(?s)```sh\n(# A CA of your own.*?)```", "recipe for the receiver's certificate")
	tls := filepath.Join(dir, "tls")
	recipe = strings.NewReplacer("IP:192.0.2.10", "IP:127.0.0.1", "/etc/rsyslog.d/tls", tls).Replace(recipe)
	if !strings.Contains(recipe, "IP:127.0.0.1") {
		t.Fatal("the recipe's certificate no longer names 192.0.2.10, the address the test replaces")
	}
	if r := runShell(t, dir, nil, "set -e\n"+recipe); r.code != 0 {
		t.Fatalf("the runbook's certificate recipe: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	return &rsyslogtest.PKI{CAFile: filepath.Join(tls, "ca.pem"), ServerCertFile: filepath.Join(tls, "cert.pem"), ServerKeyFile: filepath.Join(tls, "key.pem")}
}

// TestRunbookRsyslogReceives makes the receiver's certificate with the
// runbook's recipe, starts rsyslogd with the runbook's receiver
// configuration and recovers the example window into it over TCP, TLS (by
// address, and by the certificate's name) and RELP: every activity is in
// its output file, once per transport.
func TestRunbookRsyslogReceives(t *testing.T) {
	bin := rsyslogtest.Binary(t)
	rsyslogtest.NeedModule(t, "imrelp")
	dir := t.TempDir()
	pki := runbookCertificate(t, dir)
	tcp, tls, relp := rsyslogtest.FreePort(t, "tcp"), rsyslogtest.FreePort(t, "tcp"), rsyslogtest.FreePort(t, "tcp")
	text := runbookRsyslog(t, dir, pki, tcp, tls, relp)
	conf := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-N1", "-f", conf).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd -N1: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rsyslogd := exec.CommandContext(ctx, bin, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	if err := rsyslogd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		rsyslogd.Process.Signal(syscall.SIGTERM)
		rsyslogd.Wait()
	}()
	for _, port := range []int{tcp, tls, relp} {
		awaitListening(ctx, t, port)
	}
	out := filepath.Join(dir, "activities.log")
	sinks := [][]string{{"--sink", "tcp://127.0.0.1:" + strconv.Itoa(tcp)},
		{"--sink", "tls://127.0.0.1:" + strconv.Itoa(tls), "--ca-file", pki.CAFile},
		{"--sink", "tls://127.0.0.1:" + strconv.Itoa(tls), "--ca-file", pki.CAFile, "--tls-server-name", "siem.example.com"},
		{"--sink", "relp://127.0.0.1:" + strconv.Itoa(relp)}}
	for _, sink := range sinks {
		r := runBin(t, dir, nil, exampleArgs(t, t.TempDir(), sink...)...)
		wantCode(t, r, 0)
	}
	wantIDs, _ := exampleLines(t, nil)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, id := range cefIDs(t, string(data)) {
		counts[id]++
	}
	for _, id := range wantIDs {
		if counts[id] != len(sinks) {
			t.Fatalf("%s arrived %d times over TCP, TLS (twice) and RELP, want once each", id, counts[id])
		}
	}
	if len(counts) != len(wantIDs) {
		t.Fatalf("%d ids in rsyslog's file, want %d", len(counts), len(wantIDs))
	}
}

// awaitListening waits until something accepts connections on port.
func awaitListening(ctx context.Context, t *testing.T, port int) {
	t.Helper()
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("nothing listens on %d", port)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
