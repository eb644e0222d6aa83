package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"siem-recovery/recovery"
)

// console is stderr as the logs and the progress bar share it. On a
// terminal the bar is the last line, redrawn in place; a log line first
// clears it and the bar is drawn again below the line, so the two never
// run into each other. Elsewhere it only passes the logs through.
type console struct {
	mu    sync.Mutex
	w     io.Writer
	width func() (int, error) // the terminal's columns
	tty   bool                // a bar may be drawn
	vt    bool                // the terminal takes VT escape sequences (not Windows' console)
	bar   string
	cols  int // the width when the bar was drawn
}

// newConsole wraps stderr; a bar is drawn only when interactive (text logs,
// not --quiet) and stderr is a terminal.
func newConsole(stderr io.Writer, interactive bool) *console {
	c := &console{w: stderr}
	if f, ok := stderr.(*os.File); ok && interactive && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		c.tty, c.vt = true, runtime.GOOS != "windows"
		c.width = func() (int, error) {
			cols, _, err := term.GetSize(fd)
			return cols, err
		}
	}
	return c
}

// Write writes one log record (slog writes each record whole).
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	bar := c.bar
	c.erase()
	n, err := c.w.Write(p)
	if bar != "" && bytes.HasSuffix(p, []byte("\n")) {
		c.draw(bar)
	}
	return n, err
}

// show draws line as the bar, in place of the one before.
func (c *console) show(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tty {
		c.draw(line)
	}
}

// clear removes the bar, for the lines that end a command.
func (c *console) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.erase()
}

// draw writes line over the bar; it must fit the terminal's width, or it
// would wrap and the carriage return would no longer reach its start.
func (c *console) draw(line string) {
	if cols := c.unwrap(); cols > 1 {
		line = fitWidth(line, cols-1)
	}
	pad := max(utf8.RuneCountInString(c.bar)-utf8.RuneCountInString(line), 0)
	fmt.Fprint(c.w, "\r"+line+strings.Repeat(" ", pad))
	c.bar = line
}

// erase blanks the bar's line and returns to its start; spaces rather than
// an escape sequence, which not every Windows console understands.
func (c *console) erase() {
	c.unwrap()
	if c.bar == "" {
		return
	}
	fmt.Fprint(c.w, "\r"+strings.Repeat(" ", utf8.RuneCountInString(c.bar))+"\r")
	c.bar = ""
}

// unwrap returns the terminal's width (0 if unknown). When it narrowed
// below the bar drawn, the terminal has re-wrapped that bar over several
// rows (as terminals that reflow do: VTE, Konsole, iTerm2, Windows
// Terminal, tmux), the cursor on the last: a carriage return reaches only
// that row's start, and the rows above would stay as fragments. So those
// rows are cleared, bottom up, with VT escape sequences, and the bar is
// drawn anew on the first.
func (c *console) unwrap() int {
	if c.width == nil {
		return 0
	}
	cols, err := c.width()
	if err != nil || cols < 1 {
		return 0
	}
	narrowed := c.cols > 0 && cols < c.cols
	c.cols = cols
	if rows := (utf8.RuneCountInString(c.bar) + cols - 1) / cols; c.vt && narrowed && rows > 1 {
		fmt.Fprint(c.w, "\r\x1b[K"+strings.Repeat("\x1b[1A\x1b[K", rows-1))
		c.bar = ""
	}
	return cols
}

func fitWidth(s string, cols int) string {
	if utf8.RuneCountInString(s) <= cols {
		return s
	}
	return string([]rune(s)[:cols])
}

// progressReporter shows how far a command has come: a bar on a terminal,
// redrawn at least every second (so its clock runs on while the SIEM is
// down), else a log line every interval. The figures come from the one
// progress model, recovery.State.ProgressOf, also used by status and the
// stop message.
type progressReporter struct {
	con   *console
	log   *slog.Logger
	verb  string // what the bar says is going on: "recovering", "counting", ...
	every time.Duration
	start time.Time
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	mu        sync.Mutex
	figures   func(now time.Time) figures // the latest figures
	lastDraw  time.Time
	lastLog   time.Time
	waitSince time.Time // the SIEM has not accepted a batch since; zero when it does
	scanned   int64     // activities a scan has read so far
}

// newProgressReporter starts a reporter for verb; Close ends it.
func newProgressReporter(con *console, log *slog.Logger, verb string, every time.Duration) *progressReporter {
	now := time.Now()
	p := &progressReporter{con: con, log: log, verb: verb, every: every, start: now, lastLog: now,
		stop: make(chan struct{}), done: make(chan struct{})}
	p.figures = func(time.Time) figures { return figures{} }
	go p.tick()
	return p
}

func (p *progressReporter) tick() {
	defer close(p.done)
	if !p.con.tty {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.mu.Lock()
			p.draw(now)
			p.mu.Unlock()
		}
	}
}

// draw shows the bar; the caller holds p.mu.
func (p *progressReporter) draw(now time.Time) {
	p.lastDraw = now
	p.con.show(p.bar(p.figures(now), now))
}

// update takes new figures: the bar is redrawn at most five times a
// second, and a log line is written every interval without a terminal.
func (p *progressReporter) update(f func(time.Time) figures, logLine func()) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.figures = f
	if p.con.tty {
		if now.Sub(p.lastDraw) >= 200*time.Millisecond {
			p.draw(now)
		}
		return
	}
	if p.every > 0 && now.Sub(p.lastLog) >= p.every {
		p.lastLog = now
		logLine()
	}
}

// Update is the Replayer's Progress callback, called after each page: the
// SIEM took it, so any wait for the SIEM is over.
func (p *progressReporter) Update(st recovery.State) {
	pass := *st.Current()
	p.mu.Lock()
	p.waitSince = time.Time{}
	p.mu.Unlock()
	p.update(func(now time.Time) figures {
		return passFigures(st, pass, now)
	}, func() {
		pr := st.ProgressOf(pass, time.Now(), true)
		attrs := []any{"percent", fmt.Sprintf("%.1f", pr.Percent), "sent", pass.Sent,
			"per_second", int(passRate(pass, time.Now())), "position", pass.Position()}
		if pr.Left > 0 {
			attrs = append(attrs, "left", recovery.FormatLeft(pr.Left))
		}
		p.log.Info("progress", attrs...)
	})
}

// Waiting is told of each distinct failure to reach the SIEM (the sink's
// OnFailure): until the next page is delivered, the bar says since when
// the run has been waiting, instead of a rate that no longer moves.
func (p *progressReporter) Waiting(string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waitSince.IsZero() {
		p.waitSince = time.Now()
		if p.con.tty {
			p.draw(p.waitSince)
		}
	}
}

// Scanned is Scan's progress callback (dry run and verify): the share of
// the window read, as the source measures it, and the activities so far.
func (p *progressReporter) Scanned(page recovery.Page) {
	p.mu.Lock()
	p.scanned += int64(len(page.Activities))
	n, read, last := p.scanned, page.Progress, page.Last
	p.mu.Unlock()
	percent := math.Floor(min(read, 0.999)*1000) / 10
	if last {
		percent = 100
	}
	p.update(func(time.Time) figures {
		return figures{percent: percent, done: fmt.Sprintf("%d activities", n)}
	}, func() {
		p.log.Info("progress", "percent", fmt.Sprintf("%.1f", percent), "activities", n)
	})
}

// figures are what the bar shows besides the clock: the percent, what was
// done, the rate and the time left (these two may be empty).
type figures struct {
	percent          float64
	done, rate, left string
}

// passFigures are a pass's figures: what was sent (of the window's total,
// when known), this run's rate and the time left.
func passFigures(st recovery.State, pass recovery.Pass, now time.Time) figures {
	pr := st.ProgressOf(pass, now, true)
	f := figures{percent: pr.Percent, done: fmt.Sprintf("%d sent", pass.Sent), rate: fmt.Sprintf("%.0f/s", passRate(pass, now))}
	if pass.Skipped > 0 {
		f.done += fmt.Sprintf(", %d skipped", pass.Skipped)
	}
	switch {
	case pr.ByCount:
		f.done += fmt.Sprintf(" of %d", *st.Total)
	case st.Total != nil && st.TotalAtLeast:
		f.done += " of " + recovery.CountText(*st.Total, true)
	}
	if pr.Left > 0 {
		f.left = recovery.FormatLeft(pr.Left)
	}
	return f
}

// passRate is the pass's activities a second in its latest run alone (or
// since the SIEM came back after a wait): those sent and those skipped, as
// a top-up skips most of what it reads.
func passRate(pass recovery.Pass, now time.Time) float64 {
	elapsed := now.Sub(pass.RunStartedAt).Seconds()
	if pass.RunStartedAt.IsZero() || elapsed <= 0 {
		return 0
	}
	return float64(pass.Sent+pass.Skipped-pass.RunStartedSent-pass.RunStartedSkipped) / elapsed
}

// bar renders "recovering  42.3% [████████░░░░░░░░░░░░] 63586 sent of
// 150304 · 1234/s · 51s elapsed · 1m10s left"; while the SIEM is away, how
// long it has been away stands in place of the rate and the time left,
// which no longer mean anything. The caller holds p.mu.
func (p *progressReporter) bar(f figures, now time.Time) string {
	const width = 20
	filled := min(int(f.percent/100*width), width)
	parts := []string{fmt.Sprintf("%s %5.1f%% [%s%s]", p.verb, f.percent, strings.Repeat("█", filled), strings.Repeat("░", width-filled))}
	if f.done != "" {
		parts[0] += " " + f.done
	}
	waiting := !p.waitSince.IsZero()
	switch {
	case waiting:
		parts = append(parts, fmt.Sprintf("waiting for the SIEM since %s (%s)", p.waitSince.Format("15:04:05"), recovery.FormatLeft(now.Sub(p.waitSince))))
	case f.rate != "":
		parts = append(parts, f.rate)
	}
	parts = append(parts, recovery.FormatLeft(now.Sub(p.start))+" elapsed")
	if f.left != "" && !waiting {
		parts = append(parts, f.left+" left")
	}
	return strings.Join(parts, " · ")
}

// Close stops the clock and removes the bar before the final log lines.
// It may be called again (a deferred Close after the explicit one).
func (p *progressReporter) Close() {
	p.once.Do(func() {
		close(p.stop)
		<-p.done
		p.con.clear()
	})
}
