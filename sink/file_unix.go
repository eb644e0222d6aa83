//go:build unix

package sink

import (
	"fmt"
	"os"
	"syscall"
)

// fileIdentity names the file f is open on, for as long as it exists:
// its device and inode.
func fileIdentity(f *os.File) (string, error) {
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return "", nil
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}
