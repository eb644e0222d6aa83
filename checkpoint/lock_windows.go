//go:build windows

package checkpoint

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/windows"
)

// lockRange is the one byte a run locks: the last of the largest file, far
// past the pid at the start. Windows locks are mandatory, so locking the
// pid itself would keep status and a second run from reading who holds it.
var lockRange = windows.Overlapped{Offset: ^uint32(0), OffsetHigh: ^uint32(0)}

// openLockFile creates the lock file, or opens the one a run left, refusing
// a symbolic link (or junction) at its name.
func openLockFile(name string) (*os.File, error) {
	if info, err := os.Lstat(name); err == nil && info.Mode()&(fs.ModeSymlink|fs.ModeIrregular) != 0 {
		return nil, errors.New("a link is no lock file")
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode)
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(name, os.O_RDWR, 0)
	}
	return f, err
}

// lockFile takes an exclusive lock on f's lock byte, failing at once if
// another process holds it. It lasts until f is closed.
func lockFile(f *os.File) error {
	ol := lockRange
	return windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
}

// isLocked reports whether a run holds the lock file name, without
// creating it: a shared lock on the lock byte fails while a run holds it.
func isLocked(name string) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	h := windows.Handle(f.Fd())
	ol := lockRange
	if err := windows.LockFileEx(h, windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol); err != nil {
		return true
	}
	ol = lockRange
	windows.UnlockFileEx(h, 0, 1, 0, &ol)
	return false
}

// links is 1: the lock file's name count is not in a Windows FileInfo, and
// creating hard links there takes rights an attacker would not need them for.
func links(fs.FileInfo) uint64 { return 1 }

// syncDir does nothing: NTFS journals the rename itself, and a directory
// handle cannot be flushed.
func syncDir(string) error { return nil }
