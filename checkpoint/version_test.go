package checkpoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"siem-recovery/recovery"
)

// The files in testdata were written by siem-recovery before --by (state
// version 1): v1-export-failed.db by its binary, killed by the sink in the
// middle of a run over docs/examples/activities.jsonl (pages of 10; the
// third batch in flight), v1-api-stopped.db by its checkpoint package with
// a scan continuation.

func TestVersion1IsReadAsVersion2(t *testing.T) {
	window := recovery.Window{Start: 1715673600000, End: 1715677200000}
	for _, tc := range []struct {
		file, token  string
		state        string
		sent, flight int64
		reached      int64
	}{
		{"v1-export-failed.db", `{"offset":56496,"line":25,"line_hash":"30d8456f8edb4fce"}`, recovery.StateFailed, 20, 10, 1715674216952},
		{"v1-api-stopped.db", `{"next_filters":{"date":{"gte":1715675000000,"lte":1715677199999}}}`, recovery.StateStopped, 1000, 0, 1715675000000},
	} {
		st, _, err := Read(context.Background(), filepath.Join("testdata", tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if st.Version != 2 || st.By != recovery.ByDate || st.Window != window || string(st.Cursor.Token) != tc.token ||
			st.Scope != (recovery.Scope{Window: window}) || st.State != tc.state || st.Sent != tc.sent || st.InFlight.Activities != tc.flight ||
			st.Reached != tc.reached || st.Settle != nil {
			t.Errorf("%s read as %+v", tc.file, st)
		}
	}
}

// TestVersion1PlainCursorGivesItsTime: a plain-paging cursor was the only
// record of the time a version 1 pass had reached.
func TestVersion1PlainCursorGivesItsTime(t *testing.T) {
	v1 := `{"window":{"start":1715673600000,"end":1715677200000},"source":"https://x.example.com","filter":"","fingerprint":"fp",` +
		`"state":"stopped","cursor":{"timestamp":1715675000000,"seen_ids":["a","b"]},"progress":0,"sent":1000,"skipped":0,"resent":0,` +
		`"in_flight":0,"api_requests":0,"runs":1,"top_ups":[{"state":"completed","cursor":{},"sent":3}],` +
		`"created_at":"2026-12-02T00:28:07.479346744Z","updated_at":"2026-12-02T00:28:07.481247429Z"}`
	st, err := decodeState([]byte(v1))
	if err != nil {
		t.Fatal(err)
	}
	if string(st.Cursor.Token) != `{"timestamp":1715675000000,"seen_ids":["a","b"]}` || st.Reached != 1715675000000 ||
		len(st.TopUps) != 1 || !st.TopUps[0].Cursor.IsZero() || st.TopUps[0].Scope.Window != st.Window || st.TopUps[0].Sent != 3 {
		t.Errorf("read as %+v", st)
	}
}

// TestVersion1IsWrittenBackAsVersion2: the first update of a run stores
// the upgraded state, which reads back the same.
func TestVersion1IsWrittenBackAsVersion2(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	data, err := os.ReadFile(filepath.Join("testdata", "v1-api-stopped.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	old, _, err := Read(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path, Identity{Window: old.Window, Source: old.Source, Fingerprint: old.Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(ctx, func(st *recovery.State) error { st.Runs++; return nil }); err != nil {
		t.Fatal(err)
	}
	stored := rawState(t, path)
	if !strings.HasPrefix(stored, `{"version":2,"window":`) || !strings.Contains(stored, `"cursor":{"token":{"next_filters":`) {
		t.Errorf("stored %s", stored)
	}
	st, _ := s.Load(ctx)
	if st.Runs != 2 || string(st.Cursor.Token) != string(old.Cursor.Token) {
		t.Errorf("reloaded %+v", st)
	}
}

// TestNewerVersionRefused: a state from a later siem-recovery is exit 6
// with both versions named, and the file is left as it was.
func TestNewerVersionRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	s, err := Open(ctx, path, ident)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(path, FileMode, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		v := []byte(strings.Replace(string(b.Get(stateKey)), `"version":2`, `"version":6`, 1))
		if err := b.Put(sumKey, []byte(checksum(v))); err != nil {
			return err
		}
		return b.Put(stateKey, v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	_, err = Open(ctx, path, ident)
	want := path + " was written by a newer siem-recovery (state version 6; this siem-recovery reads up to 5); " +
		"run it with the siem-recovery that wrote it, or start this recovery afresh with another --checkpoint"
	if !errors.Is(err, recovery.ErrCheckpointUnavailable) || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("the newer checkpoint was modified")
	}
}

// rawState is the state stored at path, as stored.
func rawState(t *testing.T, path string) string {
	t.Helper()
	db, err := bolt.Open(path, FileMode, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	db.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket(bucketName).Get(stateKey))
		return nil
	})
	return v
}

// TestLanesAreStoredAsVersion3: a pass in scan lanes is stored as version
// 3, which the siem-recovery before lanes refuses instead of reading the
// pass from its start; a state without lanes stays version 2.
func TestLanesAreStoredAsVersion3(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	w := recovery.Window{Start: 1715673600000, End: 1715677200000}
	s, err := Open(ctx, path, Identity{Window: w, Source: "https://contoso.eu2.portal.cloudappsecurity.com", Fingerprint: "f"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(ctx, func(st *recovery.State) error { st.Runs++; return nil }); err != nil {
		t.Fatal(err)
	}
	if stored := rawState(t, path); !strings.HasPrefix(stored, `{"version":2,`) {
		t.Errorf("without lanes: stored %.40s", stored)
	}
	half := w.Start + 1800000
	err = s.Update(ctx, func(st *recovery.State) error {
		st.Lanes = []recovery.ScanLane{{Window: recovery.Window{Start: w.Start, End: half}, State: recovery.StateRunning, Planned: 10,
			Lane: recovery.Lane{Cursor: recovery.Cursor{Token: []byte(`{"next_filters":{"a":1}}`)}, InFlight: recovery.InFlight{Activities: 5}}},
			{Window: recovery.Window{Start: half, End: w.End}, State: recovery.StateCompleted, Sent: 7}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if stored := rawState(t, path); !strings.HasPrefix(stored, `{"version":3,`) || !strings.Contains(stored, `"lanes":[{"window":`) {
		t.Errorf("with lanes: stored %.300s", stored)
	}
	st, err := s.Load(ctx)
	if err != nil || len(st.Lanes) != 2 || st.Lanes[0].InFlight.Activities != 5 || string(st.Lanes[0].Cursor.Token) != `{"next_filters":{"a":1}}` || st.Lanes[1].Sent != 7 {
		t.Errorf("reloaded %+v, %v", st.Lanes, err)
	}
}
