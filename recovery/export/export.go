// Package export reads activities from a JSON-lines export: one MCAS
// activity object per line, as the API returns them. It is the source behind
// --source file:PATH, for recovering from an export and for trying the tool
// without a tenant.
//
// The file is read in pages of at most PageSize matching activities; memory
// is bounded by the page, never by the file. The cursor is a byte offset,
// checked on resume against a hash of the line before it, so a file that
// changed underneath a checkpoint is refused rather than misread.
package export

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"siem-recovery/internal/argfile"
	"siem-recovery/internal/parallel"
	"siem-recovery/recovery"
)

const (
	// MaxLineBytes bounds one line; MCAS activities are a few KiB.
	MaxLineBytes = 16 << 20
	// scanLinesPerPage bounds the lines read for one page, so that long
	// stretches outside the window or filter still move the checkpoint.
	scanLinesPerPage = 200_000
	// decodeRound bounds the lines read and decoded together; their copy
	// is the only memory a page needs beyond its activities.
	decodeRound = 2048
	// minLinesPerWorker keeps a short round on one goroutine.
	minLinesPerWorker = 256
)

// Source is a JSON-lines export filtered to a scope: a window on the
// activities' date or created time. It implements recovery.Source.
type Source struct {
	path     string
	f        *os.File
	size     int64
	scope    recovery.Scope
	filter   recovery.Filter
	pageSize int
	leaveRaw bool          // pages carry no Raw (LeaveRaw)
	alerts   bool          // the lines are alerts (ReadAlerts)
	r        *bufio.Reader // Fetch's reader and buffers, kept from page to page
	round    lineRound
	decoders []recovery.Decoder // one per part of a round
}

// Open opens the export at path, to read the activities of scope that
// match f. pageSize bounds the activities per page. An export must be a
// regular file: a resume seeks to a byte offset, and the checkpoint knows
// the export by its first MiB, neither of which a pipe or a device can give
// twice. Anything else fails with an *argfile.NotRegularError, at once (a
// pipe is not waited on).
func Open(path string, scope recovery.Scope, f recovery.Filter, pageSize int) (*Source, error) {
	if pageSize <= 0 {
		return nil, fmt.Errorf("page size %d: must be positive", pageSize)
	}
	file, info, err := argfile.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	return &Source{path: path, f: file, size: info.Size(), scope: scope, filter: f, pageSize: pageSize}, nil
}

// Close closes the file.
func (s *Source) Close() error { return s.f.Close() }

// LeaveRaw has the activities of every page come without Raw, their
// text: for a reader of the decoded fields only (the CEF format, a
// count, a list of ids). A page then holds no copy of its lines, and the
// buffer the lines are read into serves every round of every page:
// memory per page is the fields' text, about a fifth of the lines, and a
// run makes little garbage.
func (s *Source) LeaveRaw() { s.leaveRaw = true }

// ReadAlerts has the lines read as alerts of the MCAS alerts API (their
// _id, timestamp and the fields of the agent's alert lines:
// recovery.DecodeAlert) instead of activities. The filter is not applied
// to them (its fields are the activities').
func (s *Source) ReadAlerts() { s.alerts = true }

// Fetch reads the page that starts at cur. Lines are read in rounds of at
// most decodeRound and decoded on every CPU; they are then taken in file
// order, so the page, its cursor and the first bad line reported are those
// of a line-by-line read.
func (s *Source) Fetch(ctx context.Context, c recovery.Cursor) (recovery.Page, error) {
	cur, err := decodePosition(c)
	if err != nil {
		return recovery.Page{}, err
	}
	if err := s.checkResume(cur); err != nil {
		return recovery.Page{}, err
	}
	if _, err := s.f.Seek(cur.Offset, io.SeekStart); err != nil {
		return recovery.Page{}, fmt.Errorf("seek %s to byte %d: %w", s.path, cur.Offset, err)
	}
	if s.r == nil {
		s.r = bufio.NewReaderSize(s.f, 256<<10)
	}
	r := s.r
	r.Reset(s.f) // after the seek: what it buffered is stale
	page := recovery.Page{Activities: make([]recovery.Activity, 0, min(s.pageSize, 8192))}
	next := cur
	var raws arena // the kept lines of rounds mostly left out, copied
	round := &s.round
	for scanned := 0; !page.Last && scanned < scanLinesPerPage && len(page.Activities) < s.pageSize; {
		if err := ctx.Err(); err != nil {
			return recovery.Page{}, err
		}
		// Each line yields at most one activity: a round never reads past
		// the end of the page.
		eof, readErr := round.read(r, s.roundLines(len(page.Activities), scanned))
		s.decode(round)
		adopt := s.adopt(round)
		for i, line := range round.lines {
			lineNo := next.Line + 1
			d := &round.out[i]
			if d.err != nil {
				return recovery.Page{}, s.badLine(lineNo, d.err)
			}
			if d.keep {
				switch {
				case s.leaveRaw:
					d.act.Raw = nil // the round's buffer is read into again
				case !adopt:
					d.act.Raw = raws.clone(d.act.Raw)
				}
				page.Activities = append(page.Activities, d.act)
			}
			next.Offset += int64(len(line))
			next.Line = lineNo
		}
		scanned += len(round.lines)
		if adopt {
			// The next round's buffer is sized for the lines it will read,
			// if like these (and an eighth more): not for a full round when
			// the page needs fewer, nor for the largest line seen.
			perLine := len(round.buf) / max(len(round.lines), 1)
			lines := s.roundLines(len(page.Activities), scanned)
			if lines == 0 { // the page is full: the next page's first round
				lines = s.roundLines(0, 0)
			}
			round.buf = make([]byte, 0, min(max(perLine*lines*9/8, 64<<10), MaxLineBytes))
		}
		switch {
		case errors.Is(readErr, errLineTooLong):
			return recovery.Page{}, s.badLine(next.Line+1, fmt.Errorf("longer than %d bytes", MaxLineBytes))
		case readErr != nil:
			return recovery.Page{}, fmt.Errorf("read %s after line %d: %w", s.path, next.Line, readErr)
		}
		page.Last = eof
	}
	if !page.Last && next.Offset >= s.size {
		// Nothing follows: say so now rather than with an empty page.
		if _, err := r.Peek(1); errors.Is(err, io.EOF) {
			page.Last = true
		}
	}
	if next.Offset != cur.Offset {
		last, err := lineBefore(s.f, next.Offset)
		if err != nil {
			return recovery.Page{}, fmt.Errorf("read %s before byte %d: %w", s.path, next.Offset, err)
		}
		next.LineHash = hashLine(last)
	}
	page.Next = next.cursor()
	if s.size > 0 {
		page.Progress = float64(next.Offset) / float64(s.size)
	}
	if page.Last {
		page.Progress = 1
	}
	return page, nil
}

// roundLines is how many lines the next round of a page reads, once the
// page holds kept activities from scanned lines: each line yields at most
// one activity, so a round never reads past the end of the page.
func (s *Source) roundLines(kept, scanned int) int {
	return min(s.pageSize-kept, scanLinesPerPage-scanned, decodeRound)
}

// adopt tells whether the page takes the round's buffer, which the kept
// activities point into, rather than a copy of their lines: when most of
// the round is kept and the page keeps the lines at all.
func (s *Source) adopt(round *lineRound) bool {
	if s.leaveRaw {
		return false
	}
	kept := 0
	for i := range round.out {
		if round.out[i].keep {
			kept += len(round.out[i].act.Raw)
		}
	}
	return kept >= len(round.buf)*3/4
}

// errNoCreated: a line without the time a window by created needs.
var errNoCreated = errors.New(`the activity has neither "created" nor "createdRaw", so it cannot be placed in a window by created`)

// accept decodes one line with d and tells whether it belongs to the
// recovery. Blank lines are no activity and are passed over. It is safe
// for concurrent use with distinct decoders.
func (s *Source) accept(d *recovery.Decoder, line []byte) decoded {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return decoded{}
	}
	var (
		act recovery.Activity
		err error
	)
	if s.alerts {
		act, err = recovery.DecodeAlert(line)
		if err == nil && !s.scope.Contains(act) {
			return decoded{}
		}
		return decoded{act: act, keep: err == nil, err: err}
	}
	act, err = d.Decode(line)
	switch {
	case err != nil:
		return decoded{err: err}
	case s.scope.By == recovery.ByCreated && act.Created == 0:
		return decoded{err: errNoCreated}
	case !s.scope.Contains(act):
		return decoded{}
	}
	ok, err := s.filter.Match(act.Raw)
	return decoded{act: act, keep: ok && err == nil, err: err}
}

// decode runs accept on every line of the round, spread over the CPUs in
// contiguous runs.
func (s *Source) decode(round *lineRound) {
	n := len(round.lines)
	round.out = slices.Grow(round.out[:0], n)[:n]
	parts := parallel.Parts(n, minLinesPerWorker)
	if len(s.decoders) < parts {
		s.decoders = make([]recovery.Decoder, parts)
	}
	parallel.Run(n, parts, func(part, lo, hi int) {
		for i := lo; i < hi; i++ {
			round.out[i] = s.accept(&s.decoders[part], round.lines[i])
		}
	})
}

// decoded is what accept made of one line.
type decoded struct {
	act  recovery.Activity
	keep bool
	err  error
}

// lineRound holds the lines of one round, copied out of the reader, and
// what they decoded to. Its buffers are reused from round to round.
type lineRound struct {
	buf   []byte
	ends  []int
	lines [][]byte
	out   []decoded
}

var errLineTooLong = errors.New("line too long")

// read reads up to n lines (a last line may lack its newline). eof tells
// that the file ended; err is a read error or errLineTooLong, for the line
// after those returned.
func (l *lineRound) read(r *bufio.Reader, n int) (eof bool, err error) {
	l.buf, l.ends = l.buf[:0], l.ends[:0]
	for len(l.ends) < n {
		start := len(l.buf)
		var err error
		for {
			var part []byte
			part, err = r.ReadSlice('\n')
			l.buf = append(l.buf, part...)
			if len(bytes.TrimSuffix(l.buf[start:], []byte("\n"))) > MaxLineBytes {
				l.buf = l.buf[:start]
				l.split()
				return false, errLineTooLong
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if len(l.buf) > start {
			l.ends = append(l.ends, len(l.buf))
		}
		if err != nil {
			l.split()
			if errors.Is(err, io.EOF) {
				return true, nil
			}
			return false, err
		}
	}
	l.split()
	return false, nil
}

// split slices the lines out of buf, once it no longer grows.
func (l *lineRound) split() {
	l.lines = l.lines[:0]
	start := 0
	for _, end := range l.ends {
		l.lines = append(l.lines, l.buf[start:end:end])
		start = end
	}
}

// badLine explains why line n cannot be recovered. err may quote the
// line, which is shown escaped.
func (s *Source) badLine(n int64, err error) error {
	remedy := "fix or remove that line and re-run; the checkpoint resumes after the last page delivered"
	if errors.Is(err, errNoCreated) {
		remedy = "recover from an export whose activities carry created, or by the time they happened (--by date)"
	}
	return recovery.Problemf(recovery.ErrUsage, remedy, "%s line %d: %w", s.path, n, recovery.EscapeError(err))
}

// position is the Source's cursor token: where the next line starts, its
// number, and a hash of the line before it, so that a resume notices an
// export that changed underneath it. Its keys are those of the cursors
// checkpoints held before cursors were opaque, so those resume as they are.
type position struct {
	Offset   int64  `json:"offset,omitempty"`
	Line     int64  `json:"line,omitempty"`
	LineHash string `json:"line_hash,omitempty"`
}

func decodePosition(c recovery.Cursor) (position, error) {
	var p position
	err := c.Decode(&p, "the export")
	return p, err
}

// cursor is p as a recovery.Cursor, which names the line for people.
func (p position) cursor() recovery.Cursor {
	text := ""
	if p.Line > 0 {
		text = fmt.Sprintf("line %d of the export", p.Line)
	}
	return recovery.NewCursor(p, text)
}

// checkResume makes sure the file still has, just before cur.Offset, the
// line the checkpoint recorded there.
func (s *Source) checkResume(cur position) error {
	if cur.Offset == 0 {
		return nil
	}
	changed := func(why string) error {
		return recovery.Problemf(recovery.ErrCheckpointUnavailable,
			"resume with the export the checkpoint was made with, or start afresh with another --checkpoint",
			"the export %s changed since the checkpoint was written: %s", s.path, why)
	}
	if cur.Offset > s.size {
		return changed(fmt.Sprintf("it is %d bytes long, but the checkpoint stands at byte %d", s.size, cur.Offset))
	}
	line, err := lineBefore(s.f, cur.Offset)
	if err != nil {
		return fmt.Errorf("read %s before byte %d: %w", s.path, cur.Offset, err)
	}
	if cur.LineHash != "" && hashLine(line) != cur.LineHash {
		return changed(fmt.Sprintf("line %d is not the line delivered there", cur.Line))
	}
	return nil
}

// lineBefore returns the line that ends just before off (its newline
// included).
func lineBefore(f *os.File, off int64) ([]byte, error) {
	var line []byte
	buf := make([]byte, 4096)
	end := off - 1 // the newline that ends the line is part of it
	for pos := end; pos > 0; {
		n := int64(len(buf))
		if pos < n {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil {
			return nil, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			line = append(append([]byte{}, buf[i+1:n]...), line...)
			break
		}
		line = append(append([]byte{}, buf[:n]...), line...)
		if len(line) > MaxLineBytes {
			return nil, fmt.Errorf("line longer than %d bytes", MaxLineBytes)
		}
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, end); err != nil {
		return nil, err
	}
	return append(line, last...), nil
}

func hashLine(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:8])
}

// arena copies the lines a page keeps into a few large blocks instead of
// one allocation each; a block lives as long as the page does.
type arena struct{ block []byte }

const arenaBlock = 1 << 20

func (a *arena) clone(b []byte) []byte {
	if len(b) > cap(a.block)-len(a.block) {
		a.block = make([]byte, 0, max(arenaBlock, len(b)))
	}
	start := len(a.block)
	a.block = append(a.block, b...)
	return a.block[start:len(a.block):len(a.block)]
}

// Identity names the export at path by its content, not its path: the same
// export moved or reached from another directory is the same recovery, and
// another export at the same path is not. The first MiB decides (a resume
// also checks the line at its offset). It fails as Open does, so a path
// that can be no export (a pipe, which reading would drain) is refused
// before anything else happens.
func Identity(path string) (string, error) {
	f, _, err := argfile.OpenRegular(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, 1<<20); err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return fmt.Sprintf("file-sha256:%x", h.Sum(nil)), nil
}
