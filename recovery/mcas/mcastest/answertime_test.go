package mcastest_test

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"siem-recovery/recovery/mcas/mcastest"
)

func TestAnswerTimeHoldsEveryListing(t *testing.T) {
	const hold = 500 * time.Millisecond
	srv := mcastest.New(t, mcastest.Options{
		Activities: mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 10}),
		AnswerTime: hold,
	})
	// Three listings side by side: each is held on its own, so the
	// server answers all three at once.
	var wg sync.WaitGroup
	took := make([]time.Duration, 3)
	for i := range took {
		wg.Go(func() {
			start := time.Now()
			status, _, l := post(t, srv, "/api/v1/activities/", token(srv), body(windowFilter(), `,"limit":1`))
			took[i] = time.Since(start)
			if status != 200 || l.Total != 10 || len(l.Data) != 1 {
				t.Errorf("listing %d: %d, total %d, %d activities; want 200, 10, 1", i, status, l.Total, len(l.Data))
			}
		})
	}
	wg.Wait()
	for i, d := range took {
		if d < hold {
			t.Errorf("listing %d answered after %v, before the answer time %v", i, d, hold)
		}
	}
	if st := srv.Stats(); st.MaxInFlight != 3 || st.Served != 3 {
		t.Errorf("stats %+v: want 3 served, 3 in flight at once", st)
	}
	// A refused request is not held: a server that holds every listing for
	// an hour answers it within post's 10 s all the same, however loaded
	// the machine.
	slow := mcastest.New(t, mcastest.Options{
		Activities: mcastest.Generate(mcastest.GenerateOptions{Window: window, Count: 10}),
		AnswerTime: time.Hour,
	})
	if status, _, _ := post(t, slow, "/api/v1/activities/", "Token wrong", body(windowFilter(), "")); status != 401 {
		t.Fatalf("wrong token: %d, want 401", status)
	}
}

func TestGeneratedActivitiesAreServedAsGenerate(t *testing.T) {
	opts := mcastest.GenerateOptions{Window: window, Count: 1200, Burst: 40, BurstIndex: 480}
	held := mcastest.New(t, mcastest.Options{Activities: mcastest.Generate(opts)})
	made := mcastest.New(t, mcastest.Options{Generated: opts})
	if made.Len() != 1200 {
		t.Fatalf("Len %d, want 1200", made.Len())
	}
	// Filtered by service too: the filter reads the activity made again.
	filters := `{"date":{"gte":1714521600000},"service":{"eq":[11161,28375]}}`
	for _, extra := range []string{`,"isScan":true,"limit":5000`, `,"skip":100,"limit":100`} {
		_, _, want := post(t, held, "/api/v1/activities/", token(held), body(filters, extra))
		_, _, got := post(t, made, "/api/v1/activities/", token(made), body(filters, extra))
		if len(want.Data) == 0 || got.Total != want.Total || len(got.Data) != len(want.Data) {
			t.Fatalf("%s: total %d, %d activities; want %d, %d", extra, got.Total, len(got.Data), want.Total, len(want.Data))
		}
		for i := range want.Data {
			if !bytes.Equal(compactJSON(t, got.Data[i]), compactJSON(t, want.Data[i])) {
				t.Fatalf("%s: activity %d differs:\n%.300s\nwant\n%.300s", extra, i, got.Data[i], want.Data[i])
			}
		}
	}
}

func compactJSON(t *testing.T, raw json.RawMessage) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
