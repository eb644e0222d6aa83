package sink

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"siem-recovery/recovery"
)

// Rotation. logrotate (or an operator) renames the sink's file and creates
// a new one (create), maybe compressing the renamed file and removing it
// (compress, without delaycompress), or copies it and truncates it
// (copytruncate). A sink that kept writing through its descriptor wrote
// into a file that was gone, or past the end of a truncated one. So:
//
//   - before each batch (in Mark, or in Send when no Mark came first) the
//     sink compares its descriptor's file with what the path names now:
//     renamed or removed, it opens the path anew (created 0600, never
//     through a link); truncated, it writes on at the new end;
//   - after each batch is synced it looks again. A batch whose file was
//     compressed away or truncated while it was written may be only partly
//     in the rotated files: those are read back (the rotated siblings of
//     the path, compressed or not), and what of the batch they lack is
//     written to the path's new file, so that the union of the files holds
//     each activity once. A renamed file still holds the whole batch; if a
//     compressor is reading it, the sink waits for it to finish first;
//   - copytruncate copies the file, syncs the copy, then truncates the
//     file: what was written after the copy read to the end is in neither.
//     A plain copy of the file's current content beside it (see
//     pendingCopy) is such a copy in progress: the sink writes nothing more
//     until the truncation comes, and writes again what of its last batch
//     the copy lacks;
//   - the batch stays known until the next look, which repairs it too if
//     the rotation that took part of it is only visible then.

// writtenBatch is a batch the sink wrote and synced, and where.
type writtenBatch struct {
	file       *os.File // the descriptor it went through (kept open while the batch is watched)
	id         string   // that file's identity
	acts       []recovery.Activity
	start, end int64     // where it lies in that file
	began      time.Time // when its writing began
	// atPath: when it was synced, the path still named its file, which
	// held all of it. A rename and a compressor after that cannot lose it;
	// only a truncation can (copytruncate's copy may have begun before).
	atPath bool
}

// lost tells whether a look now finds the batch's file removed, or cut
// shorter than the batch's end.
func (b *writtenBatch) lost() bool {
	info, err := b.file.Stat()
	if err != nil {
		return false
	}
	if info.Size() < b.end {
		return true
	}
	links, err := fileLinks(b.file)
	return err == nil && links == 0 && !b.atPath
}

// seen is what the sink's descriptor and its path are now.
type seen struct {
	size   int64
	links  uint64 // names the descriptor's file has: 0 once it is removed
	atPath bool   // the path names the descriptor's file
}

func (s *fileSink) look() (seen, error) {
	info, err := s.file.Stat()
	if err != nil {
		return seen{}, fmt.Errorf("stat %s: %w", s.path, err)
	}
	links, err := fileLinks(s.file)
	if err != nil {
		return seen{}, fmt.Errorf("stat %s: %w", s.path, err)
	}
	w := seen{size: info.Size(), links: links}
	pi, err := os.Lstat(s.path)
	switch {
	case err == nil:
		w.atPath = os.SameFile(info, pi)
	case !errors.Is(err, fs.ErrNotExist):
		return seen{}, fmt.Errorf("stat %s: %w", s.path, err)
	}
	return w, nil
}

// follow is the look before a batch: a file renamed or removed under the
// sink is followed to the path's new file, a truncated one written on at
// its new end, and the last batch, if that rotation took part of it, made
// whole in the new file.
func (s *fileSink) follow(ctx context.Context) error {
	if !s.regular {
		return nil
	}
	if err := s.followPath(ctx); err != nil {
		return err
	}
	lost := s.last != nil && s.last.lost()
	if !lost && s.last != nil && s.last.file == s.file && s.awaitTruncation(ctx, s.last.end) {
		lost = true
		if err := s.followPath(ctx); err != nil {
			return err
		}
	}
	switch {
	case lost && s.last.acts == nil:
		s.log.Warn("the sink file was truncated right after a batch too large to keep for a repair (a copytruncate whose copy began before it); "+
			"the activities of that batch the copy missed are in neither file: run verify --received to find them", "file", s.path,
			"batch_bytes", s.last.end-s.last.start)
	case lost:
		if err := s.repair(ctx, s.last, 0); err != nil {
			return err
		}
	}
	s.dropLast()
	return nil
}

// followPath opens the path anew when it no longer names the sink's file,
// and takes note of a truncation.
func (s *fileSink) followPath(ctx context.Context) error {
	w, err := s.look()
	if err != nil {
		return err
	}
	switch {
	case !w.atPath || w.links == 0:
		s.awaitCreate(ctx)
		old, oldRd := s.file, s.rd
		if err := s.open(ctx); err != nil {
			return err
		}
		if s.last == nil || s.last.file != old {
			old.Close()
		}
		if oldRd != nil {
			oldRd.Close()
		}
		s.log.Info("the sink file was rotated (renamed or removed); writing on in a new file at its path", "file", s.path)
	case w.size < s.end:
		s.log.Info("the sink file was truncated (rotated with copytruncate?); writing on at its new end", "file", s.path, "size", w.size, "was", s.end)
		s.end, s.tailChecked = w.size, false
		s.newGeneration()
	default:
		s.end = w.size
	}
	return nil
}

// newGeneration notes that the sink begins writing its file as it is now
// (opened, or truncated): the siblings there now, copies of what the file
// held before among them, are no copy a truncation will follow.
func (s *fileSink) newGeneration() {
	s.before = map[string]time.Time{}
	for _, c := range s.siblings(time.Time{}) {
		s.before[c.id] = c.info.ModTime()
	}
}

// awaitCreate gives the program that renamed the sink's file a moment to
// create the new one at the path (logrotate's create, with its mode and
// owner): a sink that created it first would make that fail. The wait ends
// when the path names a file, with ctx or a planned stop, or after
// createGrace (nocreate: the sink creates the file).
func (s *fileSink) awaitCreate(ctx context.Context) {
	missing := func() bool {
		_, err := os.Lstat(s.path)
		return errors.Is(err, fs.ErrNotExist)
	}
	if !missing() {
		return
	}
	tick := time.NewTicker(compressorPoll)
	defer tick.Stop()
	deadline := time.After(createGrace)
	for missing() {
		select {
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		case <-deadline:
			return
		case <-tick.C:
		}
	}
}

// createGrace is how long a path left free by a rotation is left to the
// rotator to create the new file at.
const createGrace = time.Second

// dropLast forgets the last batch, closing its file's descriptor if the
// sink moved on from it.
func (s *fileSink) dropLast() {
	if s.last != nil && s.last.file != s.file {
		s.last.file.Close()
	}
	s.last = nil
}

// keep makes b the last batch, to be looked at again before the next.
func (s *fileSink) keep(b *writtenBatch) {
	s.dropLast()
	s.last = b
}

// maxKept bounds the bytes of a batch held in memory after it was
// written, for a repair should a rotation yet take part of it: more than a
// page of real activities in CEF or JSON (5,000 of about 2.3 KB), less than
// the largest answer a hostile API may send.
const maxKept = 16 << 20

// maxRepairs bounds how many times one batch is made whole again: each
// repair is a batch of its own, which a rotation can hit again.
const maxRepairs = 3

// deliver writes acts, syncs them, and makes sure the files the path's
// rotations left hold each of them once (see settle). depth counts the
// repairs that led here.
func (s *fileSink) deliver(ctx context.Context, acts []recovery.Activity, depth int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write to %s: %w", s.path, err)
	}
	b := &writtenBatch{file: s.file, acts: acts, began: s.now()}
	if s.regular {
		info, err := s.file.Stat()
		if err != nil {
			return fmt.Errorf("stat %s: %w", s.path, err)
		}
		if b.id, err = fileIdentity(s.file); err != nil {
			return fmt.Errorf("stat %s: %w", s.path, err)
		}
		b.start = info.Size()
	}
	n, err := s.write(acts)
	if err != nil {
		return err
	}
	if err := syncFile(s.file, s.path); err != nil {
		return err
	}
	if !s.regular {
		return nil
	}
	b.end = b.start + n
	return s.settle(ctx, b, depth)
}

// settle is the look after batch b was synced.
func (s *fileSink) settle(ctx context.Context, b *writtenBatch, depth int) error {
	w, err := s.look()
	if err != nil {
		return err
	}
	switch {
	case w.atPath && w.links > 0 && w.size >= b.end:
		if !s.awaitTruncation(ctx, b.end) {
			b.atPath, s.end = true, w.size
			if b.end-b.start > maxKept {
				// Only a copy begun, unseen, before this look and
				// truncated after could still take part of it: a batch
				// this large is not held in memory for that (a hostile
				// API's largest pages would double the run's memory).
				b.acts = nil
			}
			s.keep(b)
			return nil
		}
	case !w.atPath && w.links > 0:
		// Renamed during the batch: its file holds all of it, unless a
		// compressor read that file before the batch's last write; it
		// removes the file once done, and what it read is all that is
		// left.
		if w.links = s.awaitCompressor(ctx, b); w.links > 0 {
			s.keep(b)
			return nil
		}
	}
	return s.repair(ctx, b, depth)
}

// awaitCompressor waits, when batch b's file was renamed to a sibling of
// the path whose compressed copy is being made beside it (NAME and
// NAME.gz both there), for the compressor to remove the file, and returns
// how many names the file then has. The wait ends with ctx, a planned stop,
// or after maxCompressorWait: the batch is then taken to be in the renamed
// file, and looked at again before the next batch.
func (s *fileSink) awaitCompressor(ctx context.Context, b *writtenBatch) uint64 {
	links := func() uint64 {
		n, err := fileLinks(b.file)
		if err != nil {
			return 1
		}
		return n
	}
	name := s.siblingOf(b)
	if name == "" || !s.compressing(name) {
		return links()
	}
	s.log.Info("the sink file was rotated during a batch and is being compressed; waiting for the compressor to finish, to see what of the batch it took",
		"file", s.path, "rotated_to", name)
	tick := time.NewTicker(compressorPoll)
	defer tick.Stop()
	deadline := time.After(maxCompressorWait)
	for {
		if n := links(); n == 0 || !s.compressing(name) {
			return n
		}
		select {
		case <-ctx.Done():
			return links()
		case <-s.stop:
			return links()
		case <-deadline:
			return links()
		case <-tick.C:
		}
	}
}

const (
	compressorPoll    = 10 * time.Millisecond
	maxCompressorWait = time.Minute
)

// awaitTruncation waits, while a copy of the sink's file is being made
// beside it (pendingCopy), for the truncation that copytruncate makes next,
// and tells whether it came and cut the file shorter than end, the end of
// the sink's last batch: then what the file held after the copy read to
// its end is in neither file. The wait ends with ctx, a planned stop, the
// copy gone or grown past the file, or after maxCopyWait: a copy that no
// truncation follows (logrotate's copy, a backup) is then not waited for
// again.
func (s *fileSink) awaitTruncation(ctx context.Context, end int64) bool {
	c, ok := s.pendingCopy()
	if !ok {
		return false
	}
	s.log.Info("a copy of the sink file is being made beside it (rotated with copytruncate?); waiting for the truncation that follows before writing on",
		"file", s.path, "copy", c.name)
	truncated := func() bool {
		info, err := s.file.Stat()
		return err == nil && info.Size() < end
	}
	tick := time.NewTicker(compressorPoll)
	defer tick.Stop()
	deadline := time.After(maxCopyWait)
	for {
		if truncated() {
			return true
		}
		if _, still := s.pendingCopy(); !still {
			return truncated()
		}
		select {
		case <-ctx.Done():
			return truncated()
		case <-s.stop:
			return truncated()
		case <-deadline:
			s.newGeneration() // that copy, and any beside it now, is waited for no more
			s.log.Warn("a copy of the sink file was made beside it, but no truncation followed; writing on", "file", s.path, "copy", c.name)
			return truncated()
		case <-tick.C:
		}
	}
}

// maxCopyWait bounds the wait for the truncation after a copy: logrotate
// truncates as soon as the copy is synced. An empty copy is synced at once:
// one older than emptyCopyAge had its truncation before the sink wrote.
const (
	maxCopyWait  = 10 * time.Second
	emptyCopyAge = 2 * time.Second
)

// pendingCopy returns a copy of the sink's file being made beside it: a
// plain sibling made or changed since the sink began writing the file as
// it is (not among those it saw then), holding no more than the file,
// whose first bytes are the file's. An empty one is the copy of the file
// before the sink's first write to it; a truncation follows it at once, so
// it counts only for emptyCopyAge. A sibling that is the file itself
// (renamed), or compressed, is none.
func (s *fileSink) pendingCopy() (sibling, bool) {
	info, err := s.file.Stat()
	if err != nil || info.Size() == 0 {
		return sibling{}, false
	}
	for _, c := range s.siblings(time.Time{}) {
		if compressed(c.name) || c.info.Size() > info.Size() || os.SameFile(c.info, info) || s.before[c.id].Equal(c.info.ModTime()) ||
			c.info.Size() == 0 && s.now().Sub(c.info.ModTime()) > emptyCopyAge {
			continue
		}
		if s.samePrefix(filepath.Join(filepath.Dir(s.path), c.name), c.info) {
			return c, true
		}
	}
	return sibling{}, false
}

// samePrefix tells whether the file at path (whose lstat is info) begins
// as the sink's file does, over the first few KiB.
func (s *fileSink) samePrefix(path string, info fs.FileInfo) bool {
	f, err := openRead(path)
	if err != nil {
		return false
	}
	defer f.Close()
	n := min(info.Size(), 4096)
	a, b := make([]byte, n), make([]byte, n)
	if _, err := io.ReadFull(f, a); err != nil {
		return false
	}
	if _, err := s.rd.ReadAt(b, 0); err != nil {
		return false
	}
	return bytes.Equal(a, b)
}

// compressed tells whether a rotated file's name says it is compressed.
func compressed(name string) bool {
	switch filepath.Ext(name) {
	case ".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".Z", ".lzo", ".br":
		return true
	}
	return false
}

// siblingOf returns the name, in the path's directory, of batch b's file
// after a rename ("" if it is not there).
func (s *fileSink) siblingOf(b *writtenBatch) string {
	info, err := b.file.Stat()
	if err != nil {
		return ""
	}
	for _, c := range s.siblings(time.Time{}) {
		if os.SameFile(info, c.info) {
			return c.name
		}
	}
	return ""
}

// compressing tells whether a compressed copy of the sibling name is being
// made: a file named name plus an extension is beside it.
func (s *fileSink) compressing(name string) bool {
	entries, err := os.ReadDir(filepath.Dir(s.path))
	if err != nil {
		return false
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), name+".") {
			return true
		}
	}
	return false
}

// sibling is a file beside the path whose name begins with the path's:
// where a rotation puts the file (out.log.1, out.log-20241205,
// out.log.1.gz).
type sibling struct {
	name string
	info fs.FileInfo
	id   string // device and inode, where the platform says
}

func (c sibling) String() string {
	return fmt.Sprint(c.name, " ", c.id, " ", c.info.Size(), " ", c.info.ModTime().UnixNano())
}

// siblings lists the path's rotated siblings that are regular files
// modified since (all, for the zero time), less a margin for clocks that
// stamp coarsely.
func (s *fileSink) siblings(since time.Time) []sibling {
	dir, base := filepath.Split(s.path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []sibling
	for _, e := range entries {
		if e.Name() == base || !strings.HasPrefix(e.Name(), base) {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.ModTime().Before(since.Add(-mtimeMargin)) {
			continue
		}
		id := infoIdentity(info)
		if id == "" { // where a listing tells no file's identity
			id = fmt.Sprint(e.Name(), info.Size(), info.ModTime().UnixNano())
		}
		out = append(out, sibling{name: e.Name(), info: info, id: id})
	}
	return out
}

// mtimeMargin is how much older than a batch a file it was written to may
// look: file systems stamp with a coarse clock (FAT: 2 s).
const mtimeMargin = 2 * time.Second

// repair writes to the path's file what of batch b the files its rotation
// left lack.
func (s *fileSink) repair(ctx context.Context, b *writtenBatch, depth int) error {
	want := make(map[string]bool, len(b.acts))
	for _, a := range b.acts {
		want[a.ID] = true
	}
	held := map[string]bool{}
	if _, err := s.survivors(b.id, b.start, b.began, want, held, false); err != nil {
		return err
	}
	var missing []recovery.Activity
	for _, a := range b.acts {
		if !held[a.ID] {
			missing = append(missing, a)
		}
	}
	s.log.Info("the sink file was rotated while it held the batch just written; what of the batch the rotated files lack is written to the new file",
		"file", s.path, "activities", len(b.acts), "written_again", len(missing))
	if err := s.followPath(ctx); err != nil {
		return err
	}
	if len(missing) == 0 {
		return nil
	}
	if depth >= maxRepairs {
		return fmt.Errorf("write to %s: the file was rotated %d times during one batch", s.path, depth+1)
	}
	s.tailChecked = false // a compressed or copied file may end in the middle of a line
	if err := s.endForeignLine(); err != nil {
		return err
	}
	return s.deliver(ctx, missing, depth+1)
}

// survivors adds to held the ids (of want, unless nil) of the whole lines
// a batch that began at began and at offset start of the file with
// identity id left in the files beside the path: the siblings modified
// since it began, read from offset start (a renamed file is the file
// itself; a compressed or copied one holds its bytes at the same offsets),
// and the path's file, from its start when it is not that file or was
// truncated (what was written to it after the rotation). It reports
// whether any file could be read. With cut, a torn last line of the
// batch's own file, found under another name, is cut off (Resume's).
func (s *fileSink) survivors(id string, start int64, began time.Time, want, held map[string]bool, cut bool) (bool, error) {
	found := false
	dir := filepath.Dir(s.path)
	// A listing made while names change (the next rotation shifting
	// out.log.1.gz to out.log.2.gz) can miss a file: the directory is
	// listed again, each file read once, until two listings agree.
	read, last := map[string]bool{}, ""
	for range maxListings {
		list := s.siblings(began)
		for _, c := range list {
			if read[c.id] {
				continue
			}
			got, err := s.readSibling(filepath.Join(dir, c.name), c.info, id, start, want, held, cut)
			if err != nil {
				return found, err
			}
			read[c.id] = got != siblingGone // renamed since listed: read under its next name
			found = found || got == siblingRead
		}
		key := fmt.Sprint(list)
		if key == last {
			break
		}
		last = key
	}
	if info, err := s.file.Stat(); err == nil && !info.ModTime().Before(began.Add(-mtimeMargin)) {
		now, _ := fileIdentity(s.file)
		if now != id || info.Size() < start {
			if _, err := scanIDs(s.enc, io.NewSectionReader(s.rd, 0, info.Size()), 0, want, held); err != nil {
				return found, fmt.Errorf("read back %s: %w", s.path, err)
			}
			found = true
		}
	}
	return found, nil
}

// maxListings bounds how many times survivors reads a directory whose
// names keep changing.
const maxListings = 5

// What readSibling made of a sibling.
const (
	siblingRead  = iota // read from the batch's offset on
	siblingOther        // not the batch's file, or compressed by a program the standard library cannot read
	siblingGone         // removed or renamed since it was listed
)

// readSibling adds to held the ids of the whole lines of the rotated file
// at path (whose lstat is info) from offset start on, reading through
// gzip or bzip2 by the name's extension. A file whose bytes before start
// do not end a line is not a rotation of the batch's file and adds
// nothing; nor does a file compressed by another program than those.
func (s *fileSink) readSibling(path string, info fs.FileInfo, id string, start int64, want, held map[string]bool, cut bool) (int, error) {
	f, err := openRead(path)
	if err != nil {
		return siblingGone, nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !os.SameFile(fi, info) {
		return siblingGone, nil
	}
	var r io.Reader = f
	switch ext := filepath.Ext(path); {
	case ext == ".gz":
		z, err := gzip.NewReader(f)
		if err != nil {
			return siblingOther, nil
		}
		defer z.Close()
		r = z
	case ext == ".bz2":
		r = bzip2.NewReader(f)
	case compressed(path):
		return siblingOther, nil
	}
	if start > 0 {
		if _, err := io.CopyN(io.Discard, r, start-1); err != nil {
			return siblingOther, nil // shorter than the batch's start
		}
		var b [1]byte
		if _, err := io.ReadFull(r, b[:]); err != nil || b[0] != '\n' {
			return siblingOther, nil
		}
	}
	lineEnd, err := scanIDs(s.enc, r, start, want, held)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) { // a compressed file still being written
		return siblingRead, fmt.Errorf("read back %s: %w", path, err)
	}
	if cut && r == io.Reader(f) {
		if fid, _ := fileIdentity(f); fid == id && lineEnd < info.Size() {
			w, err := openWrite(path)
			if err != nil {
				return siblingRead, fmt.Errorf("cut the torn last line of %s: %w", path, err)
			}
			defer w.Close()
			if wi, err := w.Stat(); err == nil && os.SameFile(wi, info) {
				if err := s.cutTornLine(w, path, info.Size(), lineEnd); err != nil {
					return siblingRead, err
				}
			}
		}
	}
	return siblingRead, nil
}

// resumeRotated is Resume's read-back when the file the dead run's batch
// went to is no longer the path's, or was cut shorter than its mark: a
// rotation since, or during the batch. The batch is read back from the
// files the rotation left (see survivors): the same file under another
// name, whose torn last line is cut as it would be at the path; a
// compressed or copied one; and the path's file, which holds what the
// dead run wrote after a rotation it followed. nil when none of them could
// be read. Nothing of the path's file is cut: after a truncation, what is
// left before the dead run's writes is not the run's.
func (s *fileSink) resumeRotated(mark, now fileMark) (map[string]bool, error) {
	began := time.Time{}
	if mark.Time > 0 {
		began = time.Unix(0, mark.Time)
	}
	held := map[string]bool{}
	found, err := s.survivors(mark.File, mark.Size, began, nil, held, true)
	if err != nil || !found {
		return nil, err
	}
	s.log.Warn("the sink file was rotated since the batch in flight was written; that batch is read back from the rotated files",
		"file", s.path, "held", len(held))
	s.end = 0
	if info, err := s.file.Stat(); err == nil {
		s.end = info.Size()
	}
	return held, nil
}
