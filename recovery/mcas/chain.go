package mcas

import (
	"bytes"
	"hash/maphash"
	"sync"
)

// A chain is what one reader of a pass (a scan lane, a sweep, verify's
// scan) remembers of the pages it has followed, so that an API that would
// have it read the same activities again is caught before any of them is
// delivered:
//
//   - the continuations it was given (hashes of the latest
//     maxContinuations): one given again would list pages again, however
//     far back it points;
//   - how many answers in a row listed no new activity while they said
//     "hasNext": true: more than maxEmptyAnswers is an API that would be
//     followed forever;
//   - the ids (hashes) of the page before: an activity the API lists
//     again, within a page or across the boundary between two, is
//     dropped, not sent twice.
//
// Where the reader stands in time travels in the cursor instead
// (position.Reached): a page that ends before it went back. The memory is
// bounded whatever the window: a few hundred KiB a lane.
//
// A chain follows one sequence of cursors: a fetch from the zero cursor,
// or from any cursor other than the one its last page gave, begins it
// again (a new pass, a resume, a caller that went back on purpose), so a
// reader that is not the API can never trip it.
type chain struct {
	mu   sync.Mutex
	seed maphash.Seed
	// next is the cursor token the chain's last page gave: the one a
	// reader that follows the chain fetches next.
	next []byte
	// seen holds the continuations given, order the same ones oldest
	// first (a ring of maxContinuations).
	seen  map[uint64]bool
	order []uint64
	// empty counts the answers in a row with no new activity and hasNext.
	empty int
	// ids are the ids of the page before.
	ids map[uint64]bool
}

// Bounds of a chain's memory and patience.
const (
	// maxContinuations is how many continuations a chain remembers: a
	// loop further back also lists activities from before where the lane
	// stands, which the cursor's time catches.
	maxContinuations = 4096
	// maxEmptyAnswers is how many answers in a row may list no new
	// activity while saying more follow; the next one is malformed.
	maxEmptyAnswers = 3
)

func newChain() *chain { return &chain{seed: maphash.MakeSeed()} }

// begin makes the chain follow from the cursor token cur (nil: the start
// of a pass), whose request has the filters first (the continuation in
// cur, or the filters made for the scope's start; nil for plain paging).
// A cursor the chain did not give last starts it afresh.
func (ch *chain) begin(cur, first []byte) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if len(cur) > 0 && bytes.Equal(cur, ch.next) {
		return
	}
	ch.seen, ch.order, ch.empty, ch.ids = nil, nil, 0, nil
	ch.next = bytes.Clone(cur)
	if first != nil {
		ch.remember(ch.hash(compact(first)))
	}
}

func (ch *chain) hash(b []byte) uint64 { return maphash.Bytes(ch.seed, b) }

// remember adds the continuation whose hash is h; ch.mu is held.
func (ch *chain) remember(h uint64) {
	if ch.seen == nil {
		ch.seen = map[uint64]bool{}
	}
	if ch.seen[h] {
		return
	}
	if len(ch.order) == maxContinuations {
		delete(ch.seen, ch.order[0])
		ch.order = ch.order[1:]
	}
	ch.seen[h] = true
	ch.order = append(ch.order, h)
}

// followed reports whether the chain was given the continuation next
// (compacted) before.
func (ch *chain) followed(next []byte) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.seen[ch.hash(next)]
}

// emptyAnswers is how many answers in a row listed no new activity while
// saying more follow.
func (ch *chain) emptyAnswers() int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.empty
}

// repeats tells, for each of ids (a page's, in order), whether the API
// listed it before: earlier in the page, or in the page before.
func (ch *chain) repeats(ids []string) []bool {
	ch.mu.Lock()
	prev := ch.ids
	ch.mu.Unlock()
	dup := make([]bool, len(ids))
	page := make(map[uint64]bool, len(ids))
	for i, id := range ids {
		h := maphash.String(ch.seed, id)
		dup[i] = prev[h] || page[h]
		page[h] = true
	}
	return dup
}

// advance records a page the reader accepted: the cursor token it gives
// (next), its continuation (nil in plain paging or on the last page), the
// ids it listed, and whether any of them was new.
func (ch *chain) advance(next, continuation []byte, ids []string, fresh bool) {
	page := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		page[maphash.String(ch.seed, id)] = true
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.next = bytes.Clone(next)
	ch.ids = page
	if continuation != nil {
		ch.remember(ch.hash(compact(continuation)))
	}
	if fresh {
		ch.empty = 0
	} else {
		ch.empty++
	}
}
