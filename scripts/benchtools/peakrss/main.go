//go:build unix

// Command peakrss runs a command and prints, on stderr, its peak resident
// set size in KiB (getrusage's ru_maxrss of the child) and the CPU time it
// used in ms (user + system), then exits with its code.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	st := cmd.ProcessState
	fmt.Fprintf(os.Stderr, "peakrss_kib %d\n", st.SysUsage().(*syscall.Rusage).Maxrss)
	fmt.Fprintf(os.Stderr, "cpu_ms %d\n", (st.UserTime() + st.SystemTime()).Milliseconds())
	os.Exit(cmd.ProcessState.ExitCode())
}
