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

	"siem-recovery/recovery"
)

const (
	// MaxLineBytes bounds one line; MCAS activities are a few KiB.
	MaxLineBytes = 16 << 20
	// scanLinesPerPage bounds the lines read for one page, so that long
	// stretches outside the window or filter still move the checkpoint.
	scanLinesPerPage = 200_000
)

// Source is a JSON-lines export filtered to a window. It implements
// recovery.Source.
type Source struct {
	path     string
	f        *os.File
	size     int64
	window   recovery.Window
	filter   recovery.Filter
	pageSize int
}

// Open opens the export at path. pageSize bounds the activities per page.
func Open(path string, w recovery.Window, f recovery.Filter, pageSize int) (*Source, error) {
	if pageSize <= 0 {
		return nil, fmt.Errorf("page size %d: must be positive", pageSize)
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, recovery.Problemf(recovery.ErrUsage, "check the path after file: in --source", "cannot open the export %s: %w", path, err)
	}
	info, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if info.IsDir() {
		file.Close()
		return nil, recovery.Problemf(recovery.ErrUsage, "name a JSON-lines file after file: in --source", "the export %s is a directory", path)
	}
	return &Source{path: path, f: file, size: info.Size(), window: w, filter: f, pageSize: pageSize}, nil
}

// Close closes the file.
func (s *Source) Close() error { return s.f.Close() }

// Fetch reads the page that starts at cur.
func (s *Source) Fetch(ctx context.Context, cur recovery.Cursor) (recovery.Page, error) {
	if err := s.checkResume(cur); err != nil {
		return recovery.Page{}, err
	}
	if _, err := s.f.Seek(cur.Offset, io.SeekStart); err != nil {
		return recovery.Page{}, fmt.Errorf("seek %s to byte %d: %w", s.path, cur.Offset, err)
	}
	r := bufio.NewReaderSize(s.f, 256<<10)
	page := recovery.Page{Next: cur}
	var long []byte // a line longer than the reader's buffer, assembled
	var raws arena  // the kept lines, copied out of the reader's buffer
	for scanned := 0; scanned < scanLinesPerPage && len(page.Activities) < s.pageSize; scanned++ {
		if scanned%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return recovery.Page{}, err
			}
		}
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				if len(long) > MaxLineBytes {
					return recovery.Page{}, s.badLine(page.Next.Line+1, fmt.Errorf("longer than %d bytes", MaxLineBytes))
				}
				line, err = r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return recovery.Page{}, fmt.Errorf("read %s after line %d: %w", s.path, page.Next.Line, err)
		}
		if len(line) == 0 { // end of file
			page.Last = true
			break
		}
		lineNo := page.Next.Line + 1
		if act, keep, perr := s.accept(line); perr != nil {
			return recovery.Page{}, s.badLine(lineNo, perr)
		} else if keep {
			act.Raw = raws.clone(act.Raw)
			page.Activities = append(page.Activities, act)
		}
		page.Next.Offset += int64(len(line))
		page.Next.Line = lineNo
		if errors.Is(err, io.EOF) {
			page.Last = true
			break
		}
	}
	if !page.Last && page.Next.Offset >= s.size {
		// Nothing follows: say so now rather than with an empty page.
		if _, err := r.Peek(1); errors.Is(err, io.EOF) {
			page.Last = true
		}
	}
	if page.Next.Offset != cur.Offset {
		last, err := lineBefore(s.f, page.Next.Offset)
		if err != nil {
			return recovery.Page{}, fmt.Errorf("read %s before byte %d: %w", s.path, page.Next.Offset, err)
		}
		page.Next.LineHash = hashLine(last)
	}
	if s.size > 0 {
		page.Progress = float64(page.Next.Offset) / float64(s.size)
	}
	if page.Last {
		page.Progress = 1
	}
	return page, nil
}

// accept decodes one line and tells whether it belongs to the recovery.
// Blank lines are no activity and are passed over.
func (s *Source) accept(line []byte) (recovery.Activity, bool, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return recovery.Activity{}, false, nil
	}
	act, err := recovery.ParseActivity(line)
	if err != nil {
		return act, false, err
	}
	if !s.window.Contains(act.Timestamp) {
		return act, false, nil
	}
	ok, err := s.filter.Match(act.Raw)
	return act, ok, err
}

func (s *Source) badLine(n int64, err error) error {
	return recovery.Problemf(recovery.ErrUsage,
		"fix or remove that line and re-run; the checkpoint resumes after the last page delivered",
		"%s line %d: %w", s.path, n, err)
}

// checkResume makes sure the file still has, just before cur.Offset, the
// line the checkpoint recorded there.
func (s *Source) checkResume(cur recovery.Cursor) error {
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
