package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
)

// The bbolt file layout (format version 2), as far as checkLayout reads
// it. bbolt trusts its file: a damaged page makes it read past its map
// (a fault), loop through a cycle of pages, size a slice from a garbage
// count (a fatal out-of-memory, which no recover catches), or hand out a
// page still in use as free, so the next write overwrites live data. Its
// own consistency check has the same weaknesses and runs on a goroutine of
// its own. A checkpoint is a few pages, so each transaction first reads
// the whole file and checks every page it will touch; only a sound file is
// given to bbolt.
const (
	boltMagic   = 0xED0CDAED
	boltVersion = 2

	pageHeaderSize = 16 // id u64, flags u16, count u16, overflow u32
	elementSize    = 16 // a branch or leaf element
	inBucketSize   = 16 // root pgid u64, sequence u64

	branchPage   = 0x01
	leafPage     = 0x02
	metaPage     = 0x04
	freelistPage = 0x10
	bucketLeaf   = 0x01

	noFreelist = ^uint64(0)

	// maxCheckpointBytes bounds what checkLayout reads: a checkpoint holds
	// one small record and stays a few pages long.
	maxCheckpointBytes = 64 << 20
)

var le = binary.LittleEndian

// checkFile reads the bbolt file at name and checks its layout. It
// returns the transaction of the meta page bbolt will read.
func checkFile(name string) (txid uint64, err error) {
	info, err := os.Stat(name)
	if err != nil {
		return 0, err
	}
	if info.Size() > maxCheckpointBytes {
		return 0, fmt.Errorf("%d bytes, far more than a checkpoint holds", info.Size())
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	return checkLayout(data)
}

// boltMeta is the part of a meta page checkLayout uses.
type boltMeta struct {
	pageSize uint64
	root     uint64 // the root bucket's page
	freelist uint64
	pgid     uint64 // the high water mark: pages [0, pgid) are in use or free
	txid     uint64
}

// readMeta decodes and validates the meta page at off, as bbolt does.
func readMeta(data []byte, off int) (boltMeta, bool) {
	const metaSize = 64
	if off+pageHeaderSize+metaSize > len(data) {
		return boltMeta{}, false
	}
	m := data[off+pageHeaderSize : off+pageHeaderSize+metaSize]
	sum := fnv.New64a()
	sum.Write(m[:56])
	if le.Uint16(data[off+8:]) != metaPage || le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion || le.Uint64(m[56:]) != sum.Sum64() {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: uint64(le.Uint32(m[8:])), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]),
		pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// checkLayout checks what bbolt will read of data: the meta page it will
// choose (the valid one of the higher transaction, which must be the
// newest: see chooseMeta), the freelist, and the tree of pages from the
// root bucket, every element inside its page, no page reached twice, and
// every page either reached or free. It returns the chosen meta page's
// transaction.
func checkLayout(data []byte) (uint64, error) {
	if len(data) < 2*pageHeaderSize {
		return 0, errors.New("not a bbolt file")
	}
	m0, ok0 := readMeta(data, 0)
	size := os.Getpagesize()
	if ok0 {
		size = int(m0.pageSize)
	}
	if size < 1024 || size > 1<<16 || size&(size-1) != 0 {
		return 0, fmt.Errorf("page size %d", size)
	}
	m, err := chooseMeta(data, size)
	if err != nil {
		return 0, err
	}
	if m.pageSize != uint64(size) {
		return 0, fmt.Errorf("meta pages disagree on the page size")
	}
	if m.pgid < 3 || m.pgid > uint64(len(data)/size) {
		return 0, fmt.Errorf("%d pages in use, but the file holds %d", m.pgid, len(data)/size)
	}
	l := &layout{data: data, size: size, hwm: m.pgid, owner: make(map[uint64]string)}
	l.owner[0], l.owner[1] = "meta", "meta"
	if err := l.checkFreelist(m.freelist); err != nil {
		return 0, err
	}
	if err := l.checkTree(m.root, 0); err != nil {
		return 0, err
	}
	for id := range m.pgid {
		if l.owner[id] == "" {
			return 0, fmt.Errorf("page %d: neither in use nor free", id)
		}
	}
	return m.txid, nil
}

// chooseMeta returns the meta page bbolt will read, the valid one of the
// higher transaction, when it is certainly the newest. bbolt writes
// transaction t's meta to page t%2, so the two pages hold two consecutive
// transactions. When one fails its checksum bbolt reads the other without
// a word: right if the damaged page is the older one (the next update
// writes over it), but if it was the newer, the state bbolt reads is one
// transaction old, and a run would go on from there (its counters a batch
// behind, its position a page back) as if nothing had happened. A kill -9
// cannot tear a meta page (bbolt writes it whole, in one write, after the
// pages it points to are synced); a power loss during that write or damage
// to the disk can. The damaged page is taken for the older only when its
// own transaction field still says so, with the parity of its place;
// anything else is reported.
func chooseMeta(data []byte, size int) (boltMeta, error) {
	m0, ok0 := readMeta(data, 0)
	m1, ok1 := readMeta(data, size)
	switch {
	case ok0 && ok1 && m1.txid > m0.txid:
		return m1, nil
	case ok0 && ok1:
		return m0, nil
	case !ok0 && !ok1 && le.Uint32(data[pageHeaderSize:]) != boltMagic:
		return boltMeta{}, errors.New("not a bbolt file")
	case !ok0 && !ok1:
		return boltMeta{}, errors.New("both meta pages are damaged")
	}
	good, bad, badAt := m0, 1, size
	if ok1 {
		good, bad, badAt = m1, 0, 0
	}
	const txidAt = pageHeaderSize + 48
	older := good.txid > 0 && good.txid%2 != uint64(bad) && // good sits at its own place...
		badAt+txidAt+8 <= len(data) && le.Uint64(data[badAt+txidAt:]) == good.txid-1 // ...and the damaged one was the transaction before
	if !older {
		return boltMeta{}, fmt.Errorf("its newest meta page (page %d) is damaged; the other holds the state as it was one transaction earlier (%d)", bad, good.txid)
	}
	return good, nil
}

// layout is a file's pages as checkLayout goes through them.
type layout struct {
	data  []byte
	size  int
	hwm   uint64
	owner map[uint64]string // what holds each page: meta, freelist, free, tree
}

// page returns the bytes of the page at id with its overflow pages, and
// claims them for owner; a page out of bounds or claimed twice is an error.
func (l *layout) page(id uint64, owner string) ([]byte, uint16, int, error) {
	if id < 2 || id >= l.hwm {
		return nil, 0, 0, fmt.Errorf("page %d: out of bounds", id)
	}
	off := int(id) * l.size
	hdr := l.data[off : off+pageHeaderSize]
	if le.Uint64(hdr) != id {
		return nil, 0, 0, fmt.Errorf("page %d: its header says page %d", id, le.Uint64(hdr))
	}
	overflow := uint64(le.Uint32(hdr[12:]))
	if id+overflow >= l.hwm {
		return nil, 0, 0, fmt.Errorf("page %d: %d overflow pages run past the end", id, overflow)
	}
	for i := id; i <= id+overflow; i++ {
		if l.owner[i] != "" {
			return nil, 0, 0, fmt.Errorf("page %d: both %s and %s", i, l.owner[i], owner)
		}
		l.owner[i] = owner
	}
	return l.data[off : off+int(overflow+1)*l.size], le.Uint16(hdr[8:]), int(le.Uint16(hdr[10:])), nil
}

func (l *layout) checkFreelist(id uint64) error {
	if id == noFreelist {
		return nil // kept in memory only (NoFreelistSync): nothing to read
	}
	p, flags, count, err := l.page(id, "freelist")
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags != freelistPage {
		return fmt.Errorf("freelist: page %d is no freelist (flags %#x)", id, flags)
	}
	start := pageHeaderSize
	n := uint64(count)
	if count == 0xFFFF {
		n, start = le.Uint64(p[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > uint64(len(p)-start)/8 {
		return fmt.Errorf("freelist: %d ids do not fit its page", n)
	}
	for i := range int(n) {
		free := le.Uint64(p[start+8*i:])
		if free < 2 || free >= l.hwm || l.owner[free] != "" {
			return fmt.Errorf("freelist: page %d cannot be free", free)
		}
		l.owner[free] = "free"
	}
	return nil
}

// checkTree checks the tree of pages under id; depth bounds how far the
// buckets nest (a checkpoint has one).
func (l *layout) checkTree(id uint64, depth int) error {
	if depth > 8 {
		return errors.New("buckets nested too deep")
	}
	p, flags, count, err := l.page(id, "tree")
	if err != nil {
		return err
	}
	return l.checkNode(p, flags, count, depth)
}

// checkNode checks the elements of a branch or leaf page p (a page of the
// file, or one inline in a bucket's value).
func (l *layout) checkNode(p []byte, flags uint16, count, depth int) error {
	if flags != branchPage && flags != leafPage {
		return fmt.Errorf("page of type %#x where a branch or leaf belongs", flags)
	}
	if pageHeaderSize+count*elementSize > len(p) {
		return fmt.Errorf("%d elements do not fit their page", count)
	}
	for i := range count {
		e := pageHeaderSize + i*elementSize
		if flags == branchPage {
			if err := l.within(p, e, le.Uint32(p[e:]), uint64(le.Uint32(p[e+4:]))); err != nil {
				return err
			}
			if err := l.checkTree(le.Uint64(p[e+8:]), depth); err != nil {
				return err
			}
			continue
		}
		pos, ksize, vsize := le.Uint32(p[e+4:]), uint64(le.Uint32(p[e+8:])), uint64(le.Uint32(p[e+12:]))
		if err := l.within(p, e, pos, ksize+vsize); err != nil {
			return err
		}
		if le.Uint32(p[e:])&bucketLeaf == 0 {
			continue
		}
		v := p[e+int(pos)+int(ksize) : e+int(pos)+int(ksize+vsize)]
		if len(v) < inBucketSize {
			return errors.New("a bucket value too short for its header")
		}
		if root := le.Uint64(v); root != 0 {
			if err := l.checkTree(root, depth+1); err != nil {
				return err
			}
			continue
		}
		inline := v[inBucketSize:] // an inline bucket: its page is in the value
		if len(inline) < pageHeaderSize {
			return errors.New("an inline bucket too short for its page")
		}
		if err := l.checkNode(inline, le.Uint16(inline[8:]), int(le.Uint16(inline[10:])), depth+1); err != nil {
			return err
		}
	}
	return nil
}

// within checks that the n bytes at offset pos from the element at e lie
// inside page p.
func (l *layout) within(p []byte, e int, pos uint32, n uint64) error {
	if uint64(e)+uint64(pos)+n > uint64(len(p)) {
		return errors.New("an element points past its page")
	}
	return nil
}
