//go:build !linux

package checkpoint

import "os"

// holdIdentity has no lock to take here: the lock beside the path is the
// run's lock, and a checkpoint with more than one name is refused instead
// (see Store.holdIdentity). macOS and the BSDs make flock and fcntl locks
// conflict, and have no OFD locks, so a lock on the checkpoint file itself
// would stop bbolt's own; on Windows a lock on the file would be mandatory.
func holdIdentity(string) (f *os.File, held bool, pid int, err error) { return nil, false, 0, nil }

// identityLocked is false: there is no identity lock here.
func identityLocked(string) bool { return false }
