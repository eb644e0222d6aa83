// Package checkpoint keeps a recovery's progress in a bbolt file, so that a
// re-run resumes where the last one stopped and a completed recovery is never
// run twice.
//
// A run holds an exclusive lock on PATH.lock for its whole life, and on
// Linux one on the checkpoint file itself, which every name of the file
// shares; that is what "locked by another run" means. The bbolt file itself is opened only for the
// length of one transaction, so that Read (the status command) can look at it
// while a run is in progress.
package checkpoint

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"siem-recovery/internal/argfile"
	"siem-recovery/recovery"
)

var (
	bucketName = []byte("siem-recovery")
	stateKey   = []byte("state")
	sumKey     = []byte("state.sha256") // the first 8 bytes of the state's SHA-256, in hex
)

// FileMode is the mode of a checkpoint file and its lock: the checkpoint
// names the source and the filter, which are nobody else's business.
const FileMode = 0o600

// lockWait bounds how long a transaction waits for the bbolt file lock,
// which a status reader holds only for a moment.
const lockWait = 10 * time.Second

// Identity is what a checkpoint belongs to: a run may only resume a
// checkpoint made for the same window (on the same time, --by), source and
// filter.
type Identity struct {
	Window      recovery.Window
	By          recovery.TimeField
	Source      string // as displayed; never holds a secret
	Filter      string // canonical filter JSON of the first data type, "" for none
	Fingerprint string
	// Data are the data types the checkpoint keeps, the first the one of
	// its own state (the others are its Streams); nil is activities, as
	// before --data. The fingerprint covers them and their filters.
	Data []recovery.DataType
	// Follow makes it the identity of a feed (follow), whose window moves
	// with each cycle: a feed's checkpoint is matched without its window,
	// and is never a recovery's.
	Follow bool
}

// data is the identity's data types, activities when it names none.
func (id Identity) data() []recovery.DataType {
	if len(id.Data) == 0 {
		return []recovery.DataType{recovery.DataActivities}
	}
	return id.Data
}

// dataOf is the data types a checkpoint's state keeps.
func dataOf(st recovery.State) []recovery.DataType {
	var data []recovery.DataType
	for _, s := range st.All() {
		data = append(data, s.DataOf())
	}
	return data
}

// NewState is the state a new checkpoint of id starts with: pending, over
// id's window, for id's first data type.
func (id Identity) NewState(now time.Time) recovery.State {
	st := recovery.State{
		Window: id.Window, By: id.By, Source: id.Source, Filter: id.Filter, Fingerprint: id.Fingerprint,
		Pass:      recovery.Pass{State: recovery.StatePending, Scope: recovery.Scope{Window: id.Window, By: id.By}},
		CreatedAt: now.UTC(), UpdatedAt: now.UTC(),
	}
	if d := id.data()[0]; d != recovery.DataActivities {
		st.Data = d
	}
	if id.Follow {
		st.Follow = &recovery.Follow{}
	}
	return st
}

// Matches tells whether st is the checkpoint of this recovery: same window,
// same source and filter.
func (id Identity) Matches(st recovery.State) bool {
	if id.Follow || st.Follow != nil {
		return id.Follow && st.Follow != nil && st.Fingerprint == id.Fingerprint
	}
	return st.Fingerprint == id.Fingerprint && st.Window == id.Window && st.By == id.By
}

func (id Identity) String() string {
	filter := id.Filter
	if filter == "" {
		filter = "none"
	}
	window := id.Window.String()
	if id.By != recovery.ByDate {
		window += " by " + id.By.String()
	}
	text := fmt.Sprintf("window %s, source %s, filter %s", window, id.Source, filter)
	if d := id.data(); len(d) != 1 || d[0] != recovery.DataActivities {
		text += ", data " + dataText(d)
	}
	return text
}

// Mismatch is the error for a checkpoint made for another recovery than
// id: both identities are named, with their fingerprints when the names
// alone look the same (the same path holding another export, say).
func Mismatch(path string, st recovery.State, id Identity, asker string) error {
	switch {
	case st.Follow != nil && !id.Follow:
		return unavailable(recovery.ErrFollowCheckpoint, "give this recovery a --checkpoint of its own (a feed's goes on with siem-recovery follow)",
			"%s is the checkpoint of a feed (siem-recovery follow, from %s), not of a recovery", path, st.Source)
	case st.Follow == nil && id.Follow:
		return unavailable(recovery.ErrFollowCheckpoint, "give the feed a --checkpoint of its own (a recovery's goes on with siem-recovery run)",
			"%s is the checkpoint of a recovery (siem-recovery run, window %s), not of a feed", path, st.Window)
	case id.Follow:
		have := Identity{Source: st.Source, Filter: st.Filter, Fingerprint: st.Fingerprint, Data: dataOf(st)}
		return unavailable(nil, "give this feed a --checkpoint of its own, or follow with the source, filters and --data of the checkpoint's",
			"%s is the feed of source %s, filter %s, data %s, but %s source %s, filter %s, data %s", path,
			have.Source, orNone(have.Filter), dataText(have.data()), asker, id.Source, orNone(id.Filter), dataText(id.data()))
	}
	have := Identity{Window: st.Window, By: st.By, Source: st.Source, Filter: st.Filter, Fingerprint: st.Fingerprint, Data: dataOf(st)}
	haveText, wantText := have.String(), id.String()
	if haveText == wantText {
		haveText += " (fingerprint " + short(have.Fingerprint) + ")"
		wantText += " (fingerprint " + short(id.Fingerprint) + ": another export, or the file changed)"
	}
	return unavailable(nil, mismatchRemedy(have, id),
		"%s was made for %s, but %s %s", path, haveText, asker, wantText)
}

// mismatchRemedy is the fix for a checkpoint made for have asked for as
// want: when they differ in one part, the flag that gives the checkpoint's
// (the usual slip: a resume without --by created); else another
// checkpoint. Never the deletion of one whose recovery may be unfinished.
func mismatchRemedy(have, want Identity) string {
	const other = "use another --checkpoint for this recovery, or delete the old file once its recovery is over"
	window := have.Window != want.Window
	by := have.By != want.By
	filter := have.Filter != want.Filter
	data := dataText(have.data()) != dataText(want.data())
	// The fingerprint covers the source, the filters and the data types:
	// the source differs when it does and the rest does not (another
	// export at one path too, or another alerts filter).
	source := have.Source != want.Source || !filter && !data && have.Fingerprint != want.Fingerprint
	parts := 0
	for _, differs := range []bool{window, by, filter, source, data} {
		if differs {
			parts++
		}
	}
	if parts != 1 {
		return other
	}
	fix := ""
	switch {
	case data:
		fix = "re-run with --data " + dataText(have.data()) + ": the checkpoint was made for it"
	case by:
		fix = "re-run with --by " + have.By.String() + ": the checkpoint was made for it"
	case window:
		fix = fmt.Sprintf("re-run with the window it was made for (--start %s --end %s, or the alert it came from)",
			recovery.FormatMillis(have.Window.Start), recovery.FormatMillis(have.Window.End))
	case filter && have.Filter == "":
		fix = "re-run without --filter: the checkpoint was made for none"
	case filter:
		fix = "re-run with the --filter it was made for: " + have.Filter
	case have.Source != want.Source:
		fix = "re-run with --source " + have.Source + ": the checkpoint was made for it"
	default:
		fix = "re-run with the export it was made for (this one differs in content)"
	}
	return fix + "; or give this other recovery a --checkpoint of its own"
}

func short(fp string) string { return fp[:min(12, len(fp))] }

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// dataText is data types as --data takes them: "activities,alerts".
func dataText(data []recovery.DataType) string {
	names := make([]string, len(data))
	for i, d := range data {
		names[i] = string(d)
	}
	return strings.Join(names, ",")
}

// Store is a checkpoint held by one run. It implements recovery.Checkpoint.
type Store struct {
	path string // as the operator named it: what messages say
	file string // the file it resolves to: what is locked and opened
	lock *os.File
	// hold keeps the lock on the checkpoint file itself, which every name
	// of the file shares (see holdIdentity); nil where there is none.
	hold *os.File
	now  func() time.Time
	// created tells that Open made the file: there was none.
	created bool
	// mu makes the run's transactions one at a time, so that txid is
	// the transaction the next one must find.
	mu sync.Mutex
	// txid is the bbolt transaction this run last committed or read (0
	// before the first): nobody else writes the file while the run holds
	// its lock, so any other is damage.
	txid uint64
}

// Open locks the checkpoint at path for this run, creating it (mode 0600)
// when it does not exist. It fails with recovery.ErrCheckpointUnavailable,
// leaving the file untouched, when another run holds it, when it is corrupt
// or not a checkpoint, or when it was made for another identity.
//
// The lock is taken on the file path resolves to, symbolic links followed,
// and (on Linux) on that file itself, so two runs that name one checkpoint
// by two paths, a hard link or a bind mount included, still exclude each
// other.
func Open(ctx context.Context, path string, id Identity) (*Store, error) {
	file, err := resolve(path)
	if err != nil {
		return nil, err
	}
	lock, err := acquire(path, file+".lock", lockName(path, file))
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, file: file, lock: lock, now: time.Now}
	if err := s.init(ctx, id); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the run's locks.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close() // closing the descriptor drops the flock
	if s.hold != nil {
		err = errors.Join(err, s.hold.Close())
	}
	s.lock, s.hold = nil, nil
	return err
}

// errHeld: another run holds the lock on the checkpoint file itself.
var errHeld = errors.New("the checkpoint file is locked")

// holdIdentity locks the checkpoint file itself for the run, beside the
// lock file of its path: that lock is the path's, so a hard link or a bind
// mount of the checkpoint, another name of the same file, would have its
// own, and two runs would share the file. Where the file cannot be locked
// apart from bbolt's own lock (not on Linux, or on a network file system)
// a checkpoint with more than one name is refused instead (a bind mount is
// then the operator's to avoid).
func (s *Store) holdIdentity() error {
	f, held, pid, err := holdIdentity(s.file)
	switch {
	case errors.Is(err, errHeld):
		holder := "another siem-recovery run"
		if pid > 0 {
			holder = fmt.Sprintf("another siem-recovery run (pid %d)", pid)
		}
		return unavailable(err, "wait for that run to finish, or stop it; two runs must never share a checkpoint", "%s is locked by %s", s.path, holder)
	case err != nil:
		return unavailable(err, "check the path and its permissions", "cannot open %s: %v", s.path, err)
	case held:
		s.hold = f
		return nil
	}
	info, err := os.Stat(s.file)
	if err != nil {
		return unavailable(err, "check the path and its permissions", "cannot read %s: %v", s.path, err)
	}
	if n := links(info); n > 1 {
		return unavailable(nil, "give --checkpoint a file with one name: remove its other names (hard links), or copy it",
			"%s has %d names (hard links), and the lock of one name would not keep a run on another away", s.path, n)
	}
	return nil
}

// Path returns the checkpoint file's path.
func (s *Store) Path() string { return s.path }

// Created tells whether Open created the checkpoint (none existed), rather
// than opening one.
func (s *Store) Created() bool { return s.created }

func (s *Store) init(ctx context.Context, id Identity) error {
	_, statErr := os.Stat(s.file)
	switch {
	case errors.Is(statErr, fs.ErrNotExist):
		st := id.NewState(s.now())
		// Built aside and renamed into place: a run killed while creating
		// it leaves no half-made checkpoint that every re-run would refuse
		// as corrupt. The lock is held, so the temporary file is ours.
		tmp := s.file + ".new"
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
			err = os.Rename(tmp, s.file)
		}
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("create %s: %w", s.path, err)
		}
		s.created = true
		if err := syncDir(filepath.Dir(s.file)); err != nil {
			return err
		}
		return s.holdIdentity()
	case statErr != nil:
		return unavailable(statErr, "check the path and its permissions", "cannot read %s: %v", s.path, statErr)
	}
	if err := s.holdIdentity(); err != nil {
		return err
	}
	// An existing file is first read read-only: a corrupt or foreign file
	// must be reported, never "repaired" by opening it for writing.
	st, err := s.Load(ctx)
	if err != nil {
		return err
	}
	if !id.Matches(st) {
		return Mismatch(s.path, st, id, "this run asks for")
	}
	return nil
}

// Load returns the stored state. A state older than the one this run
// last wrote (a damaged meta page made bbolt read the one before) is
// reported as corrupt.
func (s *Store) Load(ctx context.Context) (recovery.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, txid, err := readFile(ctx, s.path, s.file, s.txid)
	if err == nil {
		s.txid = txid
	}
	return st, err
}

// Update applies fn to the stored state and writes the result in one bbolt
// transaction, stamping UpdatedAt. When fn fails nothing is written. A
// cancelled ctx does not stop the write: progress is saved on the way out.
// A file damaged since the run opened it is reported as corrupt before
// anything is written to it, and so is one whose state is older than the
// one this run last wrote.
func (s *Store) Update(ctx context.Context, fn func(*recovery.State) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return errors.New("checkpoint: update after close")
	}
	return guarded(s.path, func() error {
		db, err := openDB(s.path, s.file, false, s.txid)
		if err != nil {
			return err
		}
		defer db.Close()
		var txid uint64
		err = db.Update(func(tx *bolt.Tx) error {
			txid = uint64(tx.ID())
			b := tx.Bucket(bucketName)
			st, err := get(b)
			if err != nil {
				return stateError(s.path, err)
			}
			if err := fn(&st); err != nil {
				return err
			}
			st.UpdatedAt = s.now().UTC()
			return put(b, st)
		})
		if err == nil {
			s.txid = txid
		}
		return err
	})
}

// Read returns the state of the checkpoint at path without locking it
// against a run, and whether a run holds it right now. It never writes.
func Read(ctx context.Context, path string) (st recovery.State, running bool, err error) {
	file, err := resolve(path)
	if err != nil {
		return st, false, err
	}
	if _, err := os.Stat(file); err != nil {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			pe.Path = path // as the operator named it
		}
		return st, false, unavailable(err, "check the --checkpoint path: a run creates it when it starts", "cannot read %s: %v", path, err)
	}
	st, _, err = readFile(ctx, path, file, 0)
	if err != nil {
		return st, false, err
	}
	return st, isLocked(file+".lock") || identityLocked(file), nil
}

// readFile reads the state of the checkpoint file, named path in
// messages, and the transaction that wrote it; want is the one the caller
// last saw (see openDB). The file is opened read-only: a corrupt or
// foreign file must be reported, never "repaired" by opening it for
// writing.
func readFile(_ context.Context, path, file string, want uint64) (st recovery.State, txid uint64, err error) {
	err = guarded(path, func() error {
		db, err := openDB(path, file, true, want)
		if err != nil {
			return err
		}
		defer db.Close()
		return db.View(func(tx *bolt.Tx) error {
			txid = uint64(tx.ID())
			st, err = get(tx.Bucket(bucketName))
			return stateError(path, err)
		})
	})
	return st, txid, err
}

// openDB opens the bbolt file for one transaction, once its layout is
// found sound (see checkLayout): a damaged file is reported, never given to
// bbolt, and never written. want, when not 0, is the transaction the run
// holding the lock last committed or read: the file must still be there.
func openDB(path, file string, readOnly bool, want uint64) (*bolt.DB, error) {
	var db *bolt.DB
	txid, err := checkFile(file)
	switch {
	case err == nil && want != 0 && txid < want:
		err = fmt.Errorf("its state went back from transaction %d, this run's last, to %d: a meta page was damaged during the run", want, txid)
	case err == nil && want != 0 && txid != want:
		err = fmt.Errorf("its state is transaction %d where this run's last was %d: another program wrote to it during the run", txid, want)
	case err == nil:
		db, err = bolt.Open(file, FileMode, &bolt.Options{ReadOnly: readOnly, Timeout: lockWait})
	}
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, unavailable(err, "try again in a moment", "%s stayed locked for %s", path, lockWait)
	case errors.Is(err, fs.ErrPermission):
		return nil, unavailable(err, "run as the user that owns it", "cannot open %s: %v", path, err)
	}
	return nil, corrupt(path, err)
}

// guarded runs fn, which reads a bbolt file, and turns what bbolt does on
// a damaged one (a panic, or a memory fault reading a page its mmap does
// not hold) into the corrupt error: an operator's problem to hear about,
// not a crash.
func guarded(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = corrupt(path, fmt.Errorf("damaged bbolt file: %v", r))
		}
	}()
	return fn()
}

// stateError is the error for a stored state get could not read: one a
// newer siem-recovery wrote, or a corrupt one.
func stateError(path string, err error) error {
	var newer newerError
	switch {
	case errors.As(err, &newer):
		return unavailable(err, "run it with the siem-recovery that wrote it, or start this recovery afresh with another --checkpoint",
			"%s was written by a newer siem-recovery (%v)", path, err)
	case err != nil:
		return corrupt(path, err)
	}
	return nil
}

// corrupt is the error for a file that is no sound siem-recovery
// checkpoint.
func corrupt(path string, cause error) error {
	return unavailable(cause,
		"move it aside and re-run to start this recovery afresh (activities already sent will be sent again)",
		"%s is corrupt or not a siem-recovery checkpoint (%v)", path, cause)
}

// get decodes the stored state, checking it against its checksum: a
// damaged page can leave JSON that still decodes, to other numbers.
func get(b *bolt.Bucket) (recovery.State, error) {
	var st recovery.State
	if b == nil {
		return st, errors.New("it holds no siem-recovery state")
	}
	v := b.Get(stateKey)
	if v == nil {
		return st, errors.New("it holds no siem-recovery state")
	}
	sum := b.Get(sumKey)
	switch {
	case sum == nil && !predatesChecksum(v):
		// Every state since version 2 was written with its checksum: one
		// without is damage (a byte of the key's name is enough), and must
		// not pass for an old checkpoint, unchecked.
		return st, errors.New("its state has no checksum, which every state of its version carries")
	case sum != nil && string(sum) != checksum(v):
		return st, errors.New("its state does not match its checksum")
	}
	if err := onlyOwnKeys(b); err != nil {
		return st, err
	}
	return decodeState(v)
}

// predatesChecksum tells whether v is a state of the shape written before
// the checksum was: version 1 (no "version" key), without the scope every
// pass has since version 2. Some version 1 states have a checksum (it came
// a day before version 2); none of a later version lacks one. Both marks
// are inside the state, so damage that removes the checksum's key would
// have to change the state too, which then decodes as another version's
// or not at all.
func predatesChecksum(v []byte) bool {
	var head map[string]json.RawMessage
	if json.Unmarshal(v, &head) != nil {
		return false
	}
	_, version := head["version"]
	_, scope := head["scope"]
	return !version && !scope
}

// onlyOwnKeys checks that the bucket holds nothing but the state and its
// checksum: another key is one of theirs with a damaged name.
func onlyOwnKeys(b *bolt.Bucket) error {
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if !bytes.Equal(k, stateKey) && !bytes.Equal(k, sumKey) {
			return fmt.Errorf("it holds a key no siem-recovery writes (%q)", k)
		}
	}
	return nil
}

func checksum(v []byte) string {
	sum := sha256.Sum256(v)
	return hex.EncodeToString(sum[:8])
}

func put(b *bolt.Bucket, st recovery.State) error {
	st.Version = st.StoredVersion()
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := b.Put(stateKey, v); err != nil {
		return err
	}
	return b.Put(sumKey, []byte(checksum(v)))
}

// resolve returns the file the checkpoint path stands for: absolute, with
// every symbolic link followed, so that the lock beside it is the same for
// every path to it. A checkpoint that does not exist yet resolves through
// its directory. A path that names something other than a regular file
// (a named pipe, a device, a directory) is refused: bbolt would block on
// a pipe, or write into a device.
func resolve(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", unavailable(err, "check the --checkpoint path", "cannot resolve %s: %v", path, err)
	}
	file, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, fs.ErrNotExist) {
		if info, lerr := os.Lstat(abs); lerr == nil && info.Mode()&fs.ModeSymlink != 0 {
			return "", unavailable(nil, "point the link at an existing checkpoint, or give --checkpoint the real path",
				"%s is a symbolic link to a file that does not exist", path)
		}
		dir, derr := filepath.EvalSymlinks(filepath.Dir(abs))
		if derr != nil {
			return "", unavailable(derr, "check that the checkpoint's directory exists, or choose another --checkpoint", "cannot create %s: %v", path, derr)
		}
		return filepath.Join(dir, filepath.Base(abs)), nil
	}
	if err != nil {
		return "", unavailable(err, "check the path and its permissions", "cannot read %s: %v", path, err)
	}
	info, err := os.Stat(file)
	if err != nil {
		return "", unavailable(err, "check the path and its permissions", "cannot read %s: %v", path, err)
	}
	if !info.Mode().IsRegular() {
		return "", unavailable(nil, "give --checkpoint the path of a regular file (a run creates it)",
			"%s is %s, not a checkpoint file", path, argfile.Describe(info.Mode()))
	}
	return file, nil
}

// lockName is how messages name the lock of the checkpoint path that
// resolves to file: beside path as given, unless path is an alias.
func lockName(path, file string) string {
	if abs, err := filepath.Abs(path); err == nil && abs == file {
		return path + ".lock"
	}
	return file + ".lock"
}

// acquire takes the run lock at lockPath, beside the checkpoint's resolved
// file, and writes this process's pid into it; path and name name the
// checkpoint and the lock in messages. The lock file is never followed through a link, and never
// truncated unless it holds what a run writes (a pid, or nothing): a link
// or a hard link planted at its name must not make a run overwrite
// another file.
func acquire(path, lockPath, name string) (*os.File, error) {
	const remedy = "remove it (a run creates its lock file itself), or choose another --checkpoint"
	f, err := openLockFile(lockPath)
	if err != nil {
		if info, lerr := os.Lstat(lockPath); lerr == nil && !info.Mode().IsRegular() {
			return nil, unavailable(err, remedy, "the lock %s is %s, not a lock file", name, argfile.Describe(info.Mode()))
		}
		return nil, unavailable(err, "check that the checkpoint's directory exists and is writable, or choose another --checkpoint", "cannot create lock %s: %v", name, err)
	}
	if err := checkLockFile(f); err != nil {
		f.Close()
		return nil, unavailable(nil, remedy, "the lock %s %v", name, err)
	}
	if err := lockFile(f); err != nil {
		holder := "another process"
		if pid, ok := readPID(f); ok {
			holder = fmt.Sprintf("another siem-recovery run (pid %d)", pid)
		}
		f.Close()
		return nil, unavailable(err, "wait for that run to finish, or stop it; two runs must never share a checkpoint", "%s is locked by %s", path, holder)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// maxLockBytes is more than any pid line a run writes.
const maxLockBytes = 32

// checkLockFile makes sure f is a lock file a run made: a regular file
// with one name, holding a pid line or nothing.
func checkLockFile(f *os.File) error {
	info, err := f.Stat()
	if err != nil {
		return err
	}
	switch {
	case !info.Mode().IsRegular():
		return fmt.Errorf("is %s, not a lock file", argfile.Describe(info.Mode()))
	case links(info) > 1:
		return fmt.Errorf("has %d names (hard links): it may be another file", links(info))
	case info.Size() > maxLockBytes:
		return fmt.Errorf("holds %d bytes, not a pid: it is not a siem-recovery lock file", info.Size())
	}
	if _, ok := readPID(f); !ok && info.Size() > 0 {
		return errors.New("holds something other than a pid: it is not a siem-recovery lock file")
	}
	return nil
}

// readPID reads the pid a run wrote into its lock file.
func readPID(f *os.File) (int, bool) {
	buf := make([]byte, maxLockBytes+1)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(strings.TrimSuffix(string(buf[:n]), "\n"))
	return pid, err == nil && pid > 0
}

func unavailable(cause error, remedy, format string, args ...any) error {
	e := recovery.Problemf(recovery.ErrCheckpointUnavailable, remedy, format, args...)
	if cause != nil {
		e.Err = cause
	}
	return e
}
