package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTokenNotInProcessTitle starts the binary with --token on its command
// line, holds it (it waits to read its alert from a pipe that never
// delivers), and checks that /proc/PID/cmdline no longer shows the token.
// The process is killed before it could make any request.
func TestTokenNotInProcessTitle(t *testing.T) {
	const secret = "ThisIsTheSecretTokenValue0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
	for _, form := range [][]string{{"--token", secret}, {"--token=" + secret}, {"-token", secret}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		args := append([]string{"run", "--alert", "/dev/stdin", "--source", "https://contoso.portal.cloudappsecurity.com",
			"--checkpoint", filepath.Join(t.TempDir(), "cp.db")}, form...)
		cmd := exec.CommandContext(ctx, binary, args...)
		cmd.Env = cleanEnv()
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// main blanks the token before anything else; then the process
		// blocks reading its alert from stdin, which the test never feeds.
		procFile := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline"
		var cmdline []byte
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if cmdline, err = os.ReadFile(procFile); err != nil || bytes.Contains(cmdline, []byte("****")) {
				break
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		stdin.Close()
		cancel()
		if bytes.Contains(cmdline, []byte(secret)) {
			t.Fatalf("%v: the token is in the process title: %q", form, cmdline)
		}
		if !bytes.Contains(cmdline, []byte(strings.Repeat("*", len(secret)))) {
			t.Fatalf("%v: the token was not blanked in place: %q", form, cmdline)
		}
		if strings.Contains(stderr.String(), secret) {
			t.Fatalf("the token is on stderr: %s", stderr.String())
		}
	}
}
