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
// meta pages, and when the newer is damaged it falls back to the
// transaction before, as after a torn write (a batch the sink took may be
// sent again, counted as in flight; nothing is lost).
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
	if !same(st, stored[0]) && !same(st, stored[1]) {
		t.Fatalf("%s: opened with another state than stored: sent %d, cursor %v", filepath.Base(path), st.Sent, st.Cursor)
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
