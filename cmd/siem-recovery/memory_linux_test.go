//go:build linux

package main

import (
	"bytes"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// A run's memory is bounded by the page size, not by the window (SPEC §6:
// a 1,000,000-activity window in well under 100 MiB). A window of 200,000
// activities of the API's shape, 40 pages of 5,000, into a TCP receiver as
// scripts/bench.sh runs it: every activity arrives, and the binary's peak
// RSS stays under 80 MiB. It measures about 50 MiB; before the pages left
// out the lines CEF does not send, 85 to 132 MiB (the GC's timing moves
// it), which this ceiling catches.
func TestPeakRSSIsBoundedByThePage(t *testing.T) {
	t.Parallel()
	const n = 200_000
	dir := t.TempDir()
	tools := benchTools(t)
	export := filepath.Join(dir, "activities.jsonl")
	if out, err := exec.Command(filepath.Join(tools, "gen"), "-n", strconv.Itoa(n), "-o", export).CombinedOutput(); err != nil {
		t.Fatalf("gen: %v\n%s", err, out)
	}
	addr, received := discardingReceiver(t)

	// The peak is read by peakrss, a small process that starts the run:
	// the kernel counts in a child's peak the RSS of the process it was
	// forked from, and this test's (with the race detector, among the
	// other tests) can be hundreds of MiB.
	r := runProgram(t, dir, nil, filepath.Join(tools, "peakrss"), binary, "run", "--start", "1715673600000", "--end", "1715677200000",
		"--source", "file:"+export, "--checkpoint", filepath.Join(dir, "cp.db"), "--sink", "tcp://"+addr, "--page-size", "5000", "--quiet")
	wantCode(t, r, 0)
	if got := received(); got != n {
		t.Fatalf("the receiver got %d lines, want %d", got, n)
	}
	var peak int
	for line := range strings.Lines(r.stderr) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "peakrss_kib "); ok {
			peak, _ = strconv.Atoi(v)
		}
	}
	t.Logf("peak RSS %d MiB for %d activities", peak>>10, n)
	if peak == 0 || peak >= 80<<10 {
		t.Fatalf("peak RSS %d MiB, want under 80 MiB\nstderr: %s", peak>>10, r.stderr)
	}
}

// benchTools builds scripts/benchtools/gen, which writes the export
// scripts/bench.sh measures (built without the race detector, it writes
// one in a fraction of the time this test's code would), and peakrss; it
// returns their directory.
func benchTools(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "../../scripts/benchtools/gen", "../../scripts/benchtools/peakrss")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the bench tools: %v\n%s", err, out)
	}
	return dir
}

// discardingReceiver listens on loopback for the TCP sink: it reads each
// connection to its end and closes it, as rsyslog does, counting the
// lines. received returns the count once every connection was read.
func discardingReceiver(t *testing.T) (addr string, received func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		lines int
		conns sync.WaitGroup
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer c.Close()
				n := countLines(c)
				mu.Lock()
				lines += n
				mu.Unlock()
			})
		}
	}()
	stop := func() { l.Close(); <-done; conns.Wait() }
	t.Cleanup(stop)
	return l.Addr().String(), func() int {
		stop()
		mu.Lock()
		defer mu.Unlock()
		return lines
	}
}

func countLines(r io.Reader) int {
	buf := make([]byte, 256<<10)
	n := 0
	for {
		k, err := r.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if err != nil {
			return n
		}
	}
}
