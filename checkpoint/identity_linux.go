package checkpoint

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// The identity lock is an open file description (OFD) lock on the
// checkpoint file itself: it belongs to the file, not to the name it was
// reached by, so a hard link or a bind mount of the checkpoint finds it
// held. bbolt flock()s the file during each transaction; Linux keeps flock
// and fcntl locks apart (tryIdentity makes sure of it), and bbolt takes no
// fcntl lock, so the bytes locked here, far past the end of any
// checkpoint, are the run's alone.
//
// A run locks identityByte, and one byte more whose place says its pid
// (identityByte+1+pid): an OFD lock has no owner pid another process can
// read, so the place carries it for the message "locked by another run
// (pid N)".
const identityByte = 1 << 62

// holdIdentity takes the identity lock of the checkpoint file for as long
// as the returned file is open. It returns held = false, and no error,
// where the lock cannot work: a kernel without OFD locks, or a file system
// (NFS, SMB) that emulates flock with fcntl locks, where the lock would
// conflict with bbolt's own. It returns errHeld, with the holder's pid when
// it can tell, when another run holds it.
func holdIdentity(file string) (f *os.File, held bool, pid int, err error) {
	f, err = os.OpenFile(file, os.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, 0, err
	}
	switch err := setLock(f, identityByte, 1); {
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOLCK) || errors.Is(err, unix.EOPNOTSUPP):
		f.Close()
		return nil, false, 0, nil // no OFD locks here
	case err != nil:
		pid, _ := identityHolder(f)
		f.Close()
		return nil, false, pid, errHeld
	}
	if !flockApart(file) {
		f.Close()
		return nil, false, 0, nil
	}
	// The pid is for messages only: without it the lock above holds all
	// the same.
	_ = setLock(f, identityByte+1+int64(os.Getpid()), 1)
	return f, true, 0, nil
}

// identityLocked reports whether a run holds the identity lock of file,
// without taking it.
func identityLocked(file string) bool {
	f, err := os.OpenFile(file, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: identityByte, Len: 1}
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk) == nil && lk.Type != unix.F_UNLCK
}

// identityHolder returns the pid the holder of the identity lock wrote by
// the place of its second byte, if it did.
func identityHolder(f *os.File) (int, bool) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: identityByte + 1, Len: 1 << 32}
	if unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk) != nil || lk.Type == unix.F_UNLCK {
		return 0, false
	}
	pid := lk.Start - identityByte - 1
	return int(pid), pid > 0
}

func setLock(f *os.File, start, n int64) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Start: start, Len: n}
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
}

// flockApart tells whether a flock on file is apart from the fcntl lock
// just taken on it: a shared flock, which only another writer's
// transaction could refuse, is granted. Where flock is emulated with fcntl
// locks it is refused by the lock itself.
func flockApart(file string) bool {
	f, err := os.OpenFile(file, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) != nil {
		return false
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return true
}
