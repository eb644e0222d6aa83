package checkpoint

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"siem-recovery/recovery"
)

// pageSize is bbolt's page on the machines the tests run on (the OS page).
var pageSize = os.Getpagesize()

// realCheckpoint makes a checkpoint as runs leave it: created, then updated
// many times, with a last error long enough to need overflow pages. It
// returns the file's bytes and the last two states stored: bbolt keeps two
// meta pages, and when the newer is damaged it would fall back to the
// transaction before; that is reported now (chooseMeta), so a damaged file
// that opens holds the last state.
func realCheckpoint(t *testing.T, dir string) ([]byte, []recovery.State) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(dir, "made.db")
	s, err := Open(ctx, path, ident)
	if err != nil {
		t.Fatal(err)
	}
	var states []recovery.State
	for i := range 20 {
		err := s.Update(ctx, func(st *recovery.State) error {
			st.Sent += 5000
			st.Cursor = recovery.Cursor{Token: fmt.Appendf(nil, `{"offset":%d,"line":%d,"line_hash":"%016x"}`, int64(i)*1e6, int64(i)*5000, i)}
			st.LastError = recovery.NewRedactor().Redacted(strings.Repeat(fmt.Sprintf("error %d; ", i), 1+i*100))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		st, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, st)
	}
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 4*pageSize {
		t.Fatalf("the checkpoint has %d bytes: too few pages to damage", len(data))
	}
	return data, states[len(states)-2:]
}

// damage is one way a page can be damaged: it returns the file with page
// p changed.
type damage struct {
	name string
	do   func(data []byte, p int, rng *rand.Rand) []byte
}

func pageOf(data []byte, p int) []byte { return data[p*pageSize : (p+1)*pageSize] }

var damages = []damage{
	{"zeroed", func(d []byte, p int, _ *rand.Rand) []byte { clear(pageOf(d, p)); return d }},
	{"ones", func(d []byte, p int, _ *rand.Rand) []byte { fill(pageOf(d, p), 0xff); return d }},
	{"random", func(d []byte, p int, rng *rand.Rand) []byte { randomize(pageOf(d, p), rng); return d }},
	{"random-body", func(d []byte, p int, rng *rand.Rand) []byte { randomize(pageOf(d, p)[16:], rng); return d }},
	// The page header: id, flags, count, overflow.
	{"id", func(d []byte, p int, rng *rand.Rand) []byte {
		binary.LittleEndian.PutUint64(pageOf(d, p)[0:], rng.Uint64())
		return d
	}},
	{"flags", func(d []byte, p int, rng *rand.Rand) []byte {
		binary.LittleEndian.PutUint16(pageOf(d, p)[8:], uint16(1<<rng.IntN(5)))
		return d
	}},
	{"count", func(d []byte, p int, _ *rand.Rand) []byte {
		binary.LittleEndian.PutUint16(pageOf(d, p)[10:], 0xffff)
		return d
	}},
	{"count-small", func(d []byte, p int, rng *rand.Rand) []byte {
		c := binary.LittleEndian.Uint16(pageOf(d, p)[10:])
		binary.LittleEndian.PutUint16(pageOf(d, p)[10:], c+uint16(rng.IntN(7))+1)
		return d
	}},
	{"overflow", func(d []byte, p int, rng *rand.Rand) []byte {
		binary.LittleEndian.PutUint32(pageOf(d, p)[12:], rng.Uint32())
		return d
	}},
	// The first element of a branch, leaf or freelist page: position,
	// sizes, page ids.
	{"element", func(d []byte, p int, rng *rand.Rand) []byte {
		binary.LittleEndian.PutUint64(pageOf(d, p)[16+rng.IntN(2)*8:], rng.Uint64())
		return d
	}},
	{"bitflips", func(d []byte, p int, rng *rand.Rand) []byte {
		pg := pageOf(d, p)
		for range 8 {
			i := rng.IntN(len(pg))
			pg[i] ^= 1 << rng.IntN(8)
		}
		return d
	}},
	{"truncated", func(d []byte, p int, rng *rand.Rand) []byte { return d[:p*pageSize+rng.IntN(pageSize)] }},
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

func randomize(b []byte, rng *rand.Rand) {
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
}

// TestDamagedPagesNeverPanicOrChangeTheFile damages every page of a real
// checkpoint in many ways and opens it as a run does, then updates it.
// Never a panic or a fault (each would kill the test); a damage that is
// found is the corrupt error, with the file byte for byte as it was; a
// damage that is not found (in a page nothing uses) leaves the state read
// back exactly as stored, and the run goes on.
func TestDamagedPagesNeverPanicOrChangeTheFile(t *testing.T) {
	dir := t.TempDir()
	good, want := realCheckpoint(t, dir)
	rng := rand.New(rand.NewPCG(1, 2))
	pages := len(good) / pageSize
	found, tried := map[string]int{}, 0
	for p := range pages {
		for _, dmg := range damages {
			for round := range 2 {
				tried++
				data := dmg.do(bytes.Clone(good), p, rng)
				name := fmt.Sprintf("page%d-%s-%d", p, dmg.name, round)
				if broke := openDamaged(t, filepath.Join(dir, name+".db"), data, want); broke {
					found[dmg.name]++
				}
			}
		}
	}
	t.Logf("%d pages (most of them free), %d damages tried, found: %v", pages, tried, found)
	for _, dmg := range damages { // each kind hit a page in use at least once
		if found[dmg.name] == 0 {
			t.Errorf("no %s damage was found", dmg.name)
		}
	}
}

// openDamaged writes data at path and does what a run does with it. It
// reports whether the damage was found.
func openDamaged(t *testing.T, path string, data []byte, stored []recovery.State) bool {
	t.Helper()
	ctx := context.Background()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	unchanged := func(what string, err error) bool {
		t.Helper()
		if !errors.Is(err, recovery.ErrCheckpointUnavailable) || !strings.Contains(err.Error(), "is corrupt or not a siem-recovery checkpoint") {
			t.Fatalf("%s: %s: %v", filepath.Base(path), what, err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
			t.Fatalf("%s: %s changed the damaged file", filepath.Base(path), what)
		}
		return true
	}
	if _, _, err := Read(ctx, path); err != nil {
		unchanged("status", err)
	}
	s, err := Open(ctx, path, ident)
	if err != nil {
		return unchanged("open", err)
	}
	defer s.Close()
	st, err := s.Load(ctx)
	if err != nil {
		return unchanged("load", err)
	}
	same := func(a, b recovery.State) bool {
		return a.Sent == b.Sent && string(a.Cursor.Token) == string(b.Cursor.Token) && a.LastError.String() == b.LastError.String() && a.UpdatedAt.Equal(b.UpdatedAt)
	}
	if !same(st, stored[1]) {
		t.Fatalf("%s: opened with another state than the last stored: sent %d, cursor %v", filepath.Base(path), st.Sent, st.Cursor)
	}
	want := st
	err = s.Update(ctx, func(st *recovery.State) error { st.Sent++; return nil })
	if err != nil {
		return unchanged("update", err)
	}
	if st, err := s.Load(ctx); err != nil || st.Sent != want.Sent+1 {
		t.Fatalf("%s: after an update: sent %d, %v", filepath.Base(path), st.Sent, err)
	}
	return false
}

// A checkpoint damaged while a run holds it (between two of its
// transactions) is found by the next update, before anything is written.
func TestDamageDuringARunIsFoundBeforeWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good, _ := realCheckpoint(t, dir)
	rng := rand.New(rand.NewPCG(3, 4))
	for p := 2; p < len(good)/pageSize; p++ {
		for _, dmg := range damages {
			path := filepath.Join(dir, fmt.Sprintf("run-page%d-%s.db", p, dmg.name))
			if err := os.WriteFile(path, good, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(ctx, path, ident)
			if err != nil {
				t.Fatal(err)
			}
			data := dmg.do(bytes.Clone(good), p, rng)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			err = s.Update(ctx, func(st *recovery.State) error { st.Sent++; return nil })
			s.Close()
			if err == nil {
				continue // a page nothing uses
			}
			if !errors.Is(err, recovery.ErrCheckpointUnavailable) || !strings.Contains(err.Error(), "is corrupt") {
				t.Fatalf("page %d %s: update: %v", p, dmg.name, err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
				t.Fatalf("page %d %s: the update changed the damaged file", p, dmg.name)
			}
		}
	}
}

// A byte of the checksum's key name changed made the state read as one
// written before the checksum, unchecked: with a cursor digit changed too,
// a run resumed from the damaged cursor. Only a state of the shape written
// before the checksum (version 1) may lack one; the damage is found however
// the key's name or the state's version key was hit, and the file is left
// as it was.
func TestChecksumKeyDamageIsFound(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good, _ := realCheckpoint(t, dir)
	for _, tc := range []struct {
		name string
		old  []string
		new  []string
	}{
		{"key name", []string{"state.sha256"}, []string{"state.sha257"}},
		{"key name's first byte", []string{"state.sha256"}, []string{"xtate.sha256"}},
		// The version key as well: the state still has a scope.
		{"key name and version", []string{"state.sha256", `"version"`}, []string{"state.sha257", `"versiom"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := bytes.Clone(good)
			for i := range tc.old {
				if !bytes.Contains(data, []byte(tc.old[i])) {
					t.Fatalf("%q is not in the file", tc.old[i])
				}
				data = bytes.ReplaceAll(data, []byte(tc.old[i]), []byte(tc.new[i]))
			}
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".db")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := Read(ctx, path)
			if !errors.Is(err, recovery.ErrCheckpointUnavailable) || !strings.Contains(err.Error(), "is corrupt or not a siem-recovery checkpoint") {
				t.Fatalf("status read it: %v", err)
			}
			if _, err := Open(ctx, path, ident); !errors.Is(err, recovery.ErrCheckpointUnavailable) || !strings.Contains(err.Error(), "is corrupt") {
				t.Fatalf("a run opened it: %v", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
				t.Fatal("the damaged file changed")
			}
		})
	}
}

// newestMeta returns the offset of the meta page bbolt reads in data (the
// valid one of the higher transaction) and its transaction.
func newestMeta(t *testing.T, data []byte) (off int, txid uint64) {
	t.Helper()
	m0, ok0 := readMeta(data, 0)
	m1, ok1 := readMeta(data, pageSize)
	if !ok0 || !ok1 {
		t.Fatal("a meta page of the good file is invalid")
	}
	if m1.txid > m0.txid {
		return pageSize, m1.txid
	}
	return 0, m0.txid
}

// A damaged newest meta page made bbolt read the older one without a word:
// the run went on from the state one transaction back. It is now reported
// (exit 6), whether found when a run opens the file or by status; a damaged
// older meta page is harmless (bbolt reads the newest, and the next update
// writes over the damaged one).
func TestDamagedMetaPage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good, stored := realCheckpoint(t, dir)
	newest, txid := newestMeta(t, good)
	older := pageSize - newest
	flip := func(off int) []byte { // a byte of the root's page id: the checksum no longer matches
		d := bytes.Clone(good)
		d[off+pageHeaderSize+16] ^= 0x40
		return d
	}

	t.Run("newest", func(t *testing.T) {
		path := filepath.Join(dir, "newest.db")
		data := flip(newest)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("its newest meta page (page %d) is damaged; the other holds the state as it was one transaction earlier (%d)", newest/pageSize, txid-1)
		_, _, err := Read(ctx, path)
		wantCorrupt(t, err, want)
		_, err = Open(ctx, path, ident)
		wantCorrupt(t, err, want)
		if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
			t.Fatal("the damaged file changed")
		}
	})
	t.Run("older", func(t *testing.T) {
		path := filepath.Join(dir, "older.db")
		if err := os.WriteFile(path, flip(older), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(ctx, path, ident)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st, err := s.Load(ctx)
		if err != nil || st.Sent != stored[1].Sent {
			t.Fatalf("loaded sent %d (%v), want the last state's %d", st.Sent, err, stored[1].Sent)
		}
		if err := s.Update(ctx, func(st *recovery.State) error { st.Sent++; return nil }); err != nil {
			t.Fatal(err)
		}
		healed, _ := os.ReadFile(path)
		if _, ok := readMeta(healed, older); !ok {
			t.Fatal("the update did not write over the damaged meta page")
		}
	})
}

// A damaged newest meta page during a run made its next update start from
// the state one transaction back: sent regressed by a page. The run knows
// the transaction it last wrote; any other is reported before anything is
// written, however the file went back: a damaged meta page, one whose
// transaction field was hit too, or the whole file replaced by an older
// copy.
func TestMetaGoingBackDuringARun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		damage func(before, now []byte) []byte
		want   string
	}{
		{"meta page damaged", func(_, now []byte) []byte {
			off, _ := newestMeta(t, now)
			now[off+pageHeaderSize+16] ^= 0x40
			return now
		}, "its newest meta page (page"},
		{"transaction field too", func(_, now []byte) []byte {
			off, txid := newestMeta(t, now)
			now[off+pageHeaderSize+16] ^= 0x40
			le.PutUint64(now[off+pageHeaderSize+48:], txid-2) // as if it were the older page
			return now
		}, "its state went back from transaction"},
		{"an older copy", func(before, _ []byte) []byte { return before }, "its state went back from transaction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".db")
			s, err := Open(ctx, path, ident)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			batch := func() error {
				return s.Update(ctx, func(st *recovery.State) error { st.Sent += 500; return nil })
			}
			for range 3 {
				if err := batch(); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := os.ReadFile(path)
			if err := batch(); err != nil {
				t.Fatal(err)
			}
			now, _ := os.ReadFile(path)
			data := tc.damage(before, bytes.Clone(now))
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			wantCorrupt(t, batch(), tc.want)
			_, err = s.Load(ctx)
			wantCorrupt(t, err, tc.want)
			if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
				t.Fatal("the update changed the damaged file")
			}
		})
	}
}

func wantCorrupt(t *testing.T, err error, want string) {
	t.Helper()
	if !errors.Is(err, recovery.ErrCheckpointUnavailable) || !strings.Contains(err.Error(), "is corrupt or not a siem-recovery checkpoint") ||
		!strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want the corrupt error with %q", err, want)
	}
}
