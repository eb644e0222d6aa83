//go:build unix

package rsyslogtest

import (
	"os"
	"syscall"
)

// freeze stops p where it is (SIGSTOP).
func freeze(p *os.Process) { p.Signal(syscall.SIGSTOP) }
