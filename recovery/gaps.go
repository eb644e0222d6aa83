package recovery

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"
)

// Buckets cuts span into consecutive parts of size (the last may be
// shorter), in time order: the parts gaps compares one by one.
func Buckets(span Window, size time.Duration) []Window {
	step := size.Milliseconds()
	if step <= 0 {
		step = span.End - span.Start
	}
	var out []Window
	for t := span.Start; t < span.End; t += step {
		out = append(out, Window{Start: t, End: min(t+step, span.End)})
	}
	return out
}

// Received is what the SIEM holds, as read from its export (gaps,
// verify --received): the ids, and how many of its lines fall in each
// bucket by their time.
type Received struct {
	IDs *IDSet
	// Counts are the lines placed in each bucket (by their rt= or
	// timestamp, or created for --by created when a JSON line has it),
	// counting each id once.
	Counts []int64
	// Outside counts the lines whose time lies outside every bucket;
	// Unplaced the lines that carry no time (a bare id): those cannot be
	// given to a bucket, so a bucket's SIEM count may fall short of what
	// the SIEM holds (its ids still count as held).
	Outside, Unplaced int64
}

// ReadReceived reads the SIEM's export as ReadIDSet does (bare ids, CEF
// lines with externalId=, JSON lines with "_id") and places each line in
// the bucket its time falls in: a CEF line's rt= (an alert's start=), a
// JSON line's "timestamp", or, with by = ByCreated, its "created" when it
// has one. A line whose id was seen before counts once.
func ReadReceived(r io.Reader, buckets []Window, by TimeField) (*Received, error) {
	rec := &Received{IDs: &IDSet{}, Counts: make([]int64, len(buckets))}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	seen := map[[2]uint64]bool{}
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		id, ts, err := receivedLine(line, by)
		if err != nil {
			return nil, fmt.Errorf("line %d %w", n, err)
		}
		d := digest(id)
		if seen[d] {
			continue
		}
		seen[d] = true
		rec.IDs.digests = append(rec.IDs.digests, d)
		switch i := bucketOf(buckets, ts); {
		case ts == 0:
			rec.Unplaced++
		case i < 0:
			rec.Outside++
		default:
			rec.Counts[i]++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(rec.IDs.digests, compareDigest)
	rec.IDs.digests = slices.Clip(rec.IDs.digests)
	return rec, nil
}

// receivedLine reads one line of the SIEM's export: its id, and its time
// in Unix ms (0 when the line carries none).
func receivedLine(line []byte, by TimeField) (id []byte, ts int64, err error) {
	if line[0] == '{' {
		rid, at, created, err := RecordOfJSON(line)
		if err != nil {
			return nil, 0, fmt.Errorf("is a JSON line without an \"_id\" (nor a streaming record's properties.ReportId)")
		}
		if by == ByCreated && created != 0 {
			at = created
		}
		return []byte(rid), at, nil
	}
	i := bytes.Index(line, externalIDKey)
	if i < 0 {
		if bytes.ContainsAny(line, " \t|={}\"") {
			return nil, 0, fmt.Errorf("is neither an activity id nor a CEF line with externalId=: %.80q", line)
		}
		return line, 0, nil
	}
	id = line[i+len(externalIDKey):]
	if j := bytes.IndexAny(id, " \t"); j >= 0 {
		id = id[:j]
	}
	if len(id) == 0 {
		return nil, 0, fmt.Errorf("has an empty externalId")
	}
	for _, key := range []string{" rt=", " start="} {
		if k := bytes.Index(line, []byte(key)); k >= 0 {
			v := line[k+len(key):]
			if j := bytes.IndexAny(v, " \t"); j >= 0 {
				v = v[:j]
			}
			if ts, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				return id, ts, nil
			}
		}
	}
	return id, 0, nil
}

// bucketOf is the index of the bucket holding ts, or -1.
func bucketOf(buckets []Window, ts int64) int {
	i, _ := slices.BinarySearchFunc(buckets, ts, func(w Window, t int64) int {
		switch {
		case w.End <= t:
			return -1
		case w.Start > t:
			return 1
		}
		return 0
	})
	if i < len(buckets) && buckets[i].Contains(ts) {
		return i
	}
	return -1
}

// BucketCount is one bucket of a gaps span, compared.
type BucketCount struct {
	Window
	// Source is the source's count of the bucket: its total, where
	// AtLeast tells that the count is only a lower bound (the API's
	// moreThanTotal), or, once the bucket is Listed, how many activities
	// the listing found (exact: AtLeast is then false).
	Source  int64
	AtLeast bool
	// SIEM is how many of the SIEM's lines fall in the bucket.
	SIEM int64
	// Listed tells that the bucket's ids were listed at the source (its
	// counts disagreed, or the source's was a lower bound); Missing is then
	// how many of them the SIEM lacks. Unlisted buckets whose counts agree
	// miss nothing.
	Listed  bool
	Missing int64
}

// NeedsListing reports whether the counts alone cannot tell that the
// bucket is complete: the source's count is a lower bound, or it differs
// from the SIEM's. Equal exact counts are taken as complete (an id the
// SIEM holds twice would hide one it lacks only if it also held an
// activity the source does not have: verify --received lists everything
// when that matters).
func (b BucketCount) NeedsListing() bool { return b.AtLeast || b.Source != b.SIEM }

// Gap is a run of adjacent buckets where the SIEM lacks activities: the
// window a run sends them for.
type Gap struct {
	Window
	Source  int64 // the buckets' source counts, summed (a lower bound when AtLeast)
	AtLeast bool
	SIEM    int64
	Missing int64
}

// Gaps merges the adjacent buckets that miss activities into windows.
func Gaps(buckets []BucketCount) []Gap {
	var gaps []Gap
	for _, b := range buckets {
		if b.Missing == 0 {
			continue
		}
		if n := len(gaps); n > 0 && gaps[n-1].End == b.Start {
			g := &gaps[n-1]
			g.End = b.End
			g.Source += b.Source
			g.AtLeast = g.AtLeast || b.AtLeast
			g.SIEM += b.SIEM
			g.Missing += b.Missing
			continue
		}
		gaps = append(gaps, Gap{Window: b.Window, Source: b.Source, AtLeast: b.AtLeast, SIEM: b.SIEM, Missing: b.Missing})
	}
	return gaps
}

// A Comparer compares the buckets of a span at a source with what a SIEM
// holds (gaps, verify). It never decides on a count alone where the count
// cannot settle it: a bucket whose source count is a lower bound, or
// differs from the SIEM's, is listed at the source, and what the listing
// finds decides.
type Comparer struct {
	// Source reads the span (its own scope is Scope). A source that can
	// count (Counter) and read a part of its scope (Scoped) is counted
	// bucket by bucket and listed only where asked; any other (an export)
	// is read once, whole, which counts and lists every bucket.
	Source Source
	Scope  Scope
	// Received is what the SIEM holds, placed in the same buckets; nil
	// when there is nothing to compare with (verify with a checkpoint
	// only): the listings then only count.
	Received *Received
	// Missing is told each activity a listing finds that Received lacks,
	// in the order listed (nil: nobody needs them).
	Missing func(Activity)
	// Progress is told each page a listing reads (nil: nobody).
	Progress func(Page)
}

// Comparison is what a Comparer found: each bucket, and the requests that
// took at the source.
type Comparison struct {
	Buckets []BucketCount
	// CountRequests are the requests the counts took (one a bucket);
	// ListRequests those the listings took.
	CountRequests, ListRequests int64
}

// Requests is every request the comparison took.
func (c Comparison) Requests() int64 { return c.CountRequests + c.ListRequests }

// Listed is how many buckets were listed.
func (c Comparison) Listed() int {
	n := 0
	for _, b := range c.Buckets {
		if b.Listed {
			n++
		}
	}
	return n
}

// Source is the sum of the buckets' source counts, and whether it is only
// a lower bound (a bucket's count is).
func (c Comparison) Source() (n int64, atLeast bool) {
	for _, b := range c.Buckets {
		n += b.Source
		atLeast = atLeast || b.AtLeast
	}
	return n, atLeast
}

// Missing is how many activities the listings found the SIEM lacks.
func (c Comparison) Missing() int64 {
	var n int64
	for _, b := range c.Buckets {
		n += b.Missing
	}
	return n
}

// countSideBySide is how many buckets are counted at once: a count waits
// for the source's rate limit like any request, and answers that take
// seconds then overlap (as scan lanes do).
const countSideBySide = MaxLanes

// Count counts each of buckets (parts of the span, in time order) at the
// source, one request each, side by side, and places the SIEM's counts
// beside them. A source that cannot count them so (an export, or an
// answer without a total) is read once, whole: every bucket is then
// listed, exactly.
func (c *Comparer) Count(ctx context.Context, buckets []Window) (Comparison, error) {
	cmp := Comparison{Buckets: make([]BucketCount, len(buckets))}
	for i, b := range buckets {
		cmp.Buckets[i].Window = b
		if c.Received != nil && i < len(c.Received.Counts) {
			cmp.Buckets[i].SIEM = c.Received.Counts[i]
		}
	}
	counter, counts := c.Source.(Counter)
	if _, scoped := c.Source.(Scoped); !counts || !scoped {
		return cmp, c.readWhole(ctx, &cmp)
	}
	tallies := make([]Tally, len(buckets))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(countSideBySide)
	for i, b := range buckets {
		g.Go(func() (err error) {
			tallies[i], err = counter.Count(gctx, b)
			return err
		})
	}
	err := g.Wait()
	for i, t := range tallies {
		cmp.CountRequests += int64(t.Requests)
		cmp.Buckets[i].Source, cmp.Buckets[i].AtLeast = t.Activities, t.AtLeast
	}
	if errors.Is(err, ErrNoTotal) {
		return cmp, c.readWhole(ctx, &cmp)
	}
	if err != nil {
		return cmp, fmt.Errorf("count the activities of the span's %d parts: %w", len(buckets), err)
	}
	return cmp, nil
}

// readWhole reads the whole span once, counting and listing every bucket.
func (c *Comparer) readWhole(ctx context.Context, cmp *Comparison) error {
	windows := make([]Window, len(cmp.Buckets))
	for i := range cmp.Buckets {
		b := &cmp.Buckets[i]
		windows[i] = b.Window
		b.Source, b.AtLeast, b.Listed, b.Missing = 0, false, true, 0
	}
	_, requests, err := Scan(ctx, c.Source, func(a Activity) {
		i := bucketOf(windows, c.Scope.By.Of(a))
		if i < 0 {
			return // outside the span: the source's own scope is the span
		}
		cmp.Buckets[i].Source++
		c.noteListed(&cmp.Buckets[i], a)
	}, c.Progress)
	cmp.ListRequests += requests
	if err != nil {
		return fmt.Errorf("read the span whole: %w", err)
	}
	return nil
}

// noteListed takes one activity a listing of bucket b found: one the SIEM
// lacks is missing.
func (c *Comparer) noteListed(b *BucketCount, a Activity) {
	if c.Received == nil || c.Received.IDs.Contains(a.ID) {
		return
	}
	b.Missing++
	if c.Missing != nil {
		c.Missing(a)
	}
}

// List lists at the source, in time order, each bucket of cmp that which
// selects and no listing read yet: its count becomes what the listing
// found, and its missing activities those Received lacks.
func (c *Comparer) List(ctx context.Context, cmp *Comparison, which func(BucketCount) bool) error {
	for i := range cmp.Buckets {
		b := &cmp.Buckets[i]
		if b.Listed || !which(*b) {
			continue
		}
		b.Listed, b.Missing = true, 0
		n, requests, err := Scan(ctx, Over(c.Source, c.Scope.Within(b.Window)), func(a Activity) { c.noteListed(b, a) }, c.Progress)
		cmp.ListRequests += requests
		if err != nil {
			return fmt.Errorf("list the activities of %s: %w", b.Window, err)
		}
		b.Source, b.AtLeast = n, false
	}
	return nil
}

// Everything selects every bucket (Comparer.List).
func Everything(BucketCount) bool { return true }

// LowerBound selects the buckets whose count is only a lower bound.
func LowerBound(b BucketCount) bool { return b.AtLeast }
