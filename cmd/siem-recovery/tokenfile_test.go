//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"siem-recovery/recovery/mcas/mcastest"
)

// A token file other users can read still works, but run says so once,
// naming the file and the fix, and check shows a WARN line (exit 0); a
// private one draws no word.
func TestTokenFileReadableByOthersIsFlagged(t *testing.T) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 20})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	a := newAPIRun(t, srv, srv.Token())
	token := filepath.Join(a.dir, "token.txt")
	if err := os.Chmod(token, 0o644); err != nil {
		t.Fatal(err)
	}

	check := runBin(t, a.dir, nil, append([]string{"check"}, a.args[1:]...)...)
	wantCode(t, check, 0)
	golden(t, "check/token-file-readable/stdout", normalize(check.stdout, hostPort(srv.URL)))

	r := a.run(t, nil)
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(a.dir, "out.jsonl"), acts)
	const warning = `level=WARN msg="the token file can be read by other users" file=token.txt mode=-rw-r--r-- remedy="chmod 600 token.txt"`
	if n := strings.Count(r.stderr, warning); n != 1 {
		t.Fatalf("the warning shows %d times, want once:\n%s", n, r.stderr)
	}
	if strings.Contains(r.stderr, srv.Token()) {
		t.Fatal("the token is in the log")
	}

	if err := os.Chmod(token, 0o600); err != nil {
		t.Fatal(err)
	}
	private := newAPIRun(t, srv, srv.Token())
	check = runBin(t, private.dir, nil, append([]string{"check"}, private.args[1:]...)...)
	wantCode(t, check, 0)
	if strings.Contains(check.stdout, "WARN") {
		t.Fatalf("check warns about a private token file:\n%s", check.stdout)
	}
	r = private.run(t, nil)
	wantCode(t, r, 0)
	if strings.Contains(r.stderr, "can be read by other users") {
		t.Fatalf("run warns about a private token file:\n%s", r.stderr)
	}
}

// A token handed over a named pipe (--token-file <(vault read ...)) is
// read once, as a stream, and the run goes through.
func TestTokenFileFromAPipe(t *testing.T) {
	acts := mcastest.Generate(mcastest.GenerateOptions{Window: apiWindow, Count: 20})
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	a := newAPIRun(t, srv, "unused")
	pipe := filepath.Join(a.dir, "token.pipe")
	mkfifo(t, pipe)
	t.Cleanup(func() { // a writer still waiting for a reader gives up
		if f, err := os.OpenFile(pipe, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	go func() {
		w, err := os.OpenFile(pipe, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer w.Close()
		w.WriteString(srv.Token() + "\n")
	}()
	r := a.run(t, nil, "--token-file", "token.pipe")
	wantCode(t, r, 0)
	assertDelivered(t, filepath.Join(a.dir, "out.jsonl"), acts)
	if strings.Contains(r.stderr, "can be read by other users") {
		t.Fatalf("a private pipe drew the warning:\n%s", r.stderr)
	}
}
