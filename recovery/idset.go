package recovery

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
)

// IDSet is a set of activity ids read from the SIEM's side (--exclude-ids,
// verify --received). It keeps a 128-bit digest of each id in a sorted
// slice: 16 bytes an id however long the ids are, so millions fit in tens of
// MiB, and the chance that two different ids collide is below 2^-64 for any
// realistic count.
type IDSet struct {
	digests [][2]uint64
}

func digest(id []byte) [2]uint64 {
	sum := sha256.Sum256(id)
	return [2]uint64{binary.BigEndian.Uint64(sum[:8]), binary.BigEndian.Uint64(sum[8:16])}
}

// Contains reports whether id is in the set.
func (s *IDSet) Contains(id string) bool {
	if s == nil || len(s.digests) == 0 {
		return false
	}
	d := digest([]byte(id))
	_, found := slices.BinarySearchFunc(s.digests, d, compareDigest)
	return found
}

// Len is the number of distinct ids.
func (s *IDSet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.digests)
}

func compareDigest(a, b [2]uint64) int {
	switch {
	case a[0] < b[0]:
		return -1
	case a[0] > b[0]:
		return 1
	case a[1] < b[1]:
		return -1
	case a[1] > b[1]:
		return 1
	}
	return 0
}

var externalIDKey = []byte("externalId=")

// ReadIDSet reads ids one per line: the bare id, a CEF line (as the SIEM
// received it, with or without a syslog header) whose id is the value of
// externalId=, or a JSON activity whose id is its "_id". Blank lines and lines starting with # are ignored;
// any other line without an id is an error naming its number, so that a
// wrong file is not taken for an empty set.
func ReadIDSet(r io.Reader) (*IDSet, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	s := &IDSet{}
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		id := line
		if line[0] == '{' {
			rid, _, _, err := RecordOfJSON(line)
			if err != nil {
				return nil, fmt.Errorf("line %d is a JSON line without an \"_id\" (nor a streaming record's properties.ReportId)", n)
			}
			id = []byte(rid)
		} else if i := bytes.Index(line, externalIDKey); i >= 0 {
			id = line[i+len(externalIDKey):]
			if j := bytes.IndexAny(id, " \t"); j >= 0 {
				id = id[:j]
			}
		} else if bytes.ContainsAny(line, " \t|={}\"") {
			return nil, fmt.Errorf("line %d is neither an activity id nor a CEF line with externalId=: %.80q", n, line)
		}
		if len(id) == 0 {
			return nil, fmt.Errorf("line %d has an empty externalId", n)
		}
		s.digests = append(s.digests, digest(id))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(s.digests, compareDigest)
	s.digests = slices.CompactFunc(s.digests, func(a, b [2]uint64) bool { return a == b })
	s.digests = slices.Clip(s.digests)
	return s, nil
}

// Fingerprint identifies the set by its content (its ids, in any order,
// from any file): a checkpoint records it to know a set it has seen. The
// nil set (no file given) has none: "".
func (s *IDSet) Fingerprint() string {
	if s == nil {
		return ""
	}
	h := sha256.New()
	var b [16]byte
	for _, d := range s.digests {
		binary.BigEndian.PutUint64(b[:8], d[0])
		binary.BigEndian.PutUint64(b[8:], d[1])
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}
