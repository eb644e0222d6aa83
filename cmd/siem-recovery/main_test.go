package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binary is the siem-recovery executable built once for this package's
// tests: exit codes, signals and kill -9 are only real on a real process.
//
// The tests that spend seconds waiting (on a receiver, a kill, a token's
// expiry) run in parallel (t.Parallel). Each keeps everything in its own
// directory: its checkpoint by --checkpoint, or the default one of an API
// source, whose emulator's address no other test shares. A test whose run
// takes the default checkpoint of an export stays sequential: the state
// directory is shared, and two such runs of the same export would share
// that checkpoint. So does a test that listens on a port it freed.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "siem-recovery-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "siem-recovery")
	// A run without --checkpoint keeps its checkpoint in the user's state
	// directory: never the real one of the machine running the tests.
	os.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	// Built as the README says, CGO_ENABLED=0: the binary shipped is static.
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build siem-recovery:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what a finished run of the binary left behind.
type result struct {
	stdout, stderr string
	code           int
}

// runBin runs the binary in dir with args and extra environment, bounded
// in time, and returns its output and exit code.
func runBin(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	return runProgram(t, dir, env, binary, args...)
}

// runShell runs a command line in dir as a POSIX shell reads it, as an
// operator would paste it.
func runShell(t *testing.T, dir string, env []string, line string) result {
	t.Helper()
	return runProgram(t, dir, env, "/bin/sh", "-c", line)
}

func runProgram(t *testing.T, dir string, env []string, program string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, program, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	default:
		t.Fatalf("run %v: %v\nstderr: %s", args, err, stderr.String())
	}
	if ctx.Err() != nil {
		t.Fatalf("run %v: timed out\nstderr: %s", args, stderr.String())
	}
	return res
}

// cleanEnv is the test's environment without any SIEM_RECOVERY_ or
// MCAS_TOKEN variable of the machine, nor any that configures an Azure
// identity, so that flags alone decide.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SIEM_RECOVERY_") || name == "MCAS_TOKEN" || strings.HasPrefix(name, "AZURE_") ||
			strings.HasPrefix(name, "IDENTITY_") || strings.HasPrefix(name, "MSI_") || name == "IMDS_ENDPOINT" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// repoRoot is where the bundled examples are, relative to this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout: %.2000s\nstderr: %.4000s", r.code, code, r.stdout, r.stderr)
	}
}

func wantStderr(t *testing.T, r result, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(r.stderr, p) {
			t.Errorf("stderr lacks %q\nstderr: %.4000s", p, r.stderr)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
