// Package checkpoint keeps a recovery's progress in a bbolt file, so that a
// re-run resumes where the last one stopped and a completed recovery is never
// run twice.
//
// A run holds an exclusive lock on PATH.lock for its whole life; that is what
// "locked by another run" means. The bbolt file itself is opened only for the
// length of one transaction, so that Read (the status command) can look at it
// while a run is in progress.
package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"siem-recovery/recovery"
)

var (
	bucketName = []byte("siem-recovery")
	stateKey   = []byte("state")
)

// FileMode is the mode of a checkpoint file and its lock: the checkpoint
// names the source and the filter, which are nobody else's business.
const FileMode = 0o600

// lockWait bounds how long a transaction waits for the bbolt file lock,
// which a status reader holds only for a moment.
const lockWait = 10 * time.Second

// Identity is what a checkpoint belongs to: a run may only resume a
// checkpoint made for the same window, source and filter.
type Identity struct {
	Window      recovery.Window
	Source      string // as displayed; never holds a secret
	Filter      string // canonical filter JSON, "" for none
	Fingerprint string
}

// Matches tells whether st is the checkpoint of this recovery: same window,
// same source and filter.
func (id Identity) Matches(st recovery.State) bool {
	return st.Fingerprint == id.Fingerprint && st.Window == id.Window
}

func (id Identity) String() string {
	filter := id.Filter
	if filter == "" {
		filter = "none"
	}
	return fmt.Sprintf("window %s, source %s, filter %s", id.Window, id.Source, filter)
}

// Mismatch is the error for a checkpoint made for another recovery than
// id: both identities are named, with their fingerprints when the names
// alone look the same (the same path holding another export, say).
func Mismatch(path string, st recovery.State, id Identity, asker string) error {
	have := Identity{Window: st.Window, Source: st.Source, Filter: st.Filter, Fingerprint: st.Fingerprint}
	haveText, wantText := have.String(), id.String()
	if haveText == wantText {
		haveText += " (fingerprint " + short(have.Fingerprint) + ")"
		wantText += " (fingerprint " + short(id.Fingerprint) + ": another export, or the file changed)"
	}
	return unavailable(nil,
		"use another --checkpoint for this recovery, or delete the old file once its recovery is over",
		"%s was made for %s, but %s %s", path, haveText, asker, wantText)
}

func short(fp string) string { return fp[:min(12, len(fp))] }

// Store is a checkpoint held by one run. It implements recovery.Checkpoint.
type Store struct {
	path string
	lock *os.File
	now  func() time.Time
}

// Open locks the checkpoint at path for this run, creating it (mode 0600)
// when it does not exist. It fails with recovery.ErrCheckpointUnavailable,
// leaving the file untouched, when another run holds it, when it is corrupt
// or not a checkpoint, or when it was made for another identity.
func Open(ctx context.Context, path string, id Identity) (*Store, error) {
	lock, err := acquire(path)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, lock: lock, now: time.Now}
	if err := s.init(ctx, id); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the run's lock.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close() // closing the descriptor drops the flock
	s.lock = nil
	return err
}

// Path returns the checkpoint file's path.
func (s *Store) Path() string { return s.path }

func (s *Store) init(ctx context.Context, id Identity) error {
	_, statErr := os.Stat(s.path)
	switch {
	case errors.Is(statErr, fs.ErrNotExist):
		now := s.now().UTC()
		st := recovery.State{
			Window: id.Window, Source: id.Source, Filter: id.Filter, Fingerprint: id.Fingerprint,
			Pass: recovery.Pass{State: recovery.StatePending}, CreatedAt: now, UpdatedAt: now,
		}
		// Built aside and renamed into place: a run killed while creating
		// it leaves no half-made checkpoint that every re-run would refuse
		// as corrupt. The lock is held, so the temporary file is ours.
		tmp := s.path + ".new"
		os.Remove(tmp)
		db, err := bolt.Open(tmp, FileMode, &bolt.Options{Timeout: lockWait})
		if err != nil {
			return unavailable(fmt.Errorf("create %s: %w", s.path, err), "check that its directory exists and is writable, or choose another --checkpoint", "cannot create %s: %v", s.path, err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketName)
			if err != nil {
				return err
			}
			return put(b, st)
		})
		if err = errors.Join(err, db.Close()); err == nil {
			err = os.Rename(tmp, s.path)
		}
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("create %s: %w", s.path, err)
		}
		return syncDir(filepath.Dir(s.path))
	case statErr != nil:
		return unavailable(statErr, "check the path and its permissions", "cannot read %s: %v", s.path, statErr)
	}
	// An existing file is first read read-only: a corrupt or foreign file
	// must be reported, never "repaired" by opening it for writing.
	st, err := readFile(ctx, s.path)
	if err != nil {
		return err
	}
	if !id.Matches(st) {
		return Mismatch(s.path, st, id, "this run asks for")
	}
	return nil
}

// Load returns the stored state.
func (s *Store) Load(ctx context.Context) (recovery.State, error) {
	return readFile(ctx, s.path)
}

// Update applies fn to the stored state and writes the result in one bbolt
// transaction, stamping UpdatedAt. When fn fails nothing is written. A
// cancelled ctx does not stop the write: progress is saved on the way out.
func (s *Store) Update(ctx context.Context, fn func(*recovery.State) error) error {
	if s.lock == nil {
		return errors.New("checkpoint: update after close")
	}
	db, err := bolt.Open(s.path, FileMode, &bolt.Options{Timeout: lockWait})
	if err != nil {
		return fmt.Errorf("open checkpoint %s: %w", s.path, err)
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		if b == nil {
			return fmt.Errorf("checkpoint %s lost its bucket", s.path)
		}
		st, err := get(b)
		if err != nil {
			return err
		}
		if err := fn(&st); err != nil {
			return err
		}
		st.UpdatedAt = s.now().UTC()
		return put(b, st)
	})
}

// Read returns the state of the checkpoint at path without locking it
// against a run, and whether a run holds it right now. It never writes.
func Read(ctx context.Context, path string) (st recovery.State, running bool, err error) {
	if _, err := os.Stat(path); err != nil {
		return st, false, unavailable(err, "check the --checkpoint path: a run creates it when it starts", "cannot read %s: %v", path, err)
	}
	st, err = readFile(ctx, path)
	if err != nil {
		return st, false, err
	}
	return st, isLocked(path), nil
}

func readFile(ctx context.Context, path string) (st recovery.State, err error) {
	corrupt := func(cause error) error {
		return unavailable(cause,
			"move it aside and re-run to start this recovery afresh (activities already sent will be sent again)",
			"%s is corrupt or not a siem-recovery checkpoint (%v)", path, cause)
	}
	// bbolt panics on some forms of damage, and a truncated file faults
	// (SIGBUS) when its mmap is read; a damaged checkpoint is an operator's
	// problem to hear about, not a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = corrupt(fmt.Errorf("damaged bbolt file: %v", r))
		}
	}()
	db, err := bolt.Open(path, FileMode, &bolt.Options{ReadOnly: true, Timeout: lockWait})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return st, unavailable(err, "try again in a moment", "%s stayed locked for %s", path, lockWait)
		}
		if errors.Is(err, fs.ErrPermission) {
			return st, unavailable(err, "run as the user that owns it", "cannot open %s: %v", path, err)
		}
		return st, corrupt(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		if b == nil {
			return errors.New("it holds no siem-recovery state")
		}
		st, err = get(b)
		return err
	})
	if err != nil {
		return st, corrupt(err)
	}
	return st, nil
}

func get(b *bolt.Bucket) (recovery.State, error) {
	var st recovery.State
	v := b.Get(stateKey)
	if v == nil {
		return st, errors.New("it holds no siem-recovery state")
	}
	if err := json.Unmarshal(v, &st); err != nil {
		return st, fmt.Errorf("its state does not decode: %w", err)
	}
	return st, nil
}

func put(b *bolt.Bucket, st recovery.State) error {
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return b.Put(stateKey, v)
}

// acquire takes the run lock PATH.lock, writing this process's pid into it.
func acquire(path string) (*os.File, error) {
	lockPath := path + ".lock"
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return nil, unavailable(err, "check that the checkpoint's directory exists and is writable, or choose another --checkpoint", "cannot create lock %s: %v", lockPath, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(lockPath); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = fmt.Sprintf("another siem-recovery run (pid %d)", pid)
			}
		}
		f.Close()
		return nil, unavailable(err, "wait for that run to finish, or stop it; two runs must never share a checkpoint", "%s is locked by %s", path, holder)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// isLocked reports whether a run holds path's lock, without creating it.
func isLocked(path string) bool {
	f, err := os.Open(path + ".lock")
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return true
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

func unavailable(cause error, remedy, format string, args ...any) error {
	e := recovery.Problemf(recovery.ErrCheckpointUnavailable, remedy, format, args...)
	if cause != nil {
		e.Err = cause
	}
	return e
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
