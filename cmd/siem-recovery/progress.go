package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"siem-recovery/recovery"
)

// progressReporter shows a run's progress: a bar when stderr is a terminal
// (and logs are text and not --quiet), else a log line every interval.
type progressReporter struct {
	bar      *progressbar.ProgressBar
	log      *slog.Logger
	start    time.Time
	lastLog  time.Time
	every    time.Duration
	sentAtGo int64 // sent before this run, so the rate is this run's
}

func newProgressReporter(stderr io.Writer, log *slog.Logger, interactive bool, every time.Duration, st recovery.State) *progressReporter {
	p := &progressReporter{log: log, start: time.Now(), lastLog: time.Now(), every: every, sentAtGo: st.Sent}
	if interactive && isTerminal(stderr) {
		p.bar = progressbar.NewOptions(1000,
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription(describe(st.Sent, 0)),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func describe(sent int64, rate float64) string {
	return fmt.Sprintf("recovering: %d sent, %.0f/s", sent, rate)
}

// Update is the Replayer's Progress callback, called after each page.
func (p *progressReporter) Update(st recovery.State) {
	elapsed := time.Since(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(st.Sent-p.sentAtGo) / elapsed
	}
	if p.bar != nil {
		p.bar.Describe(describe(st.Sent, rate))
		p.bar.Set(int(st.Progress * 1000))
		return
	}
	if p.every > 0 && time.Since(p.lastLog) >= p.every {
		p.lastLog = time.Now()
		p.log.Info("progress", "percent", fmt.Sprintf("%.1f", 100*st.Progress), "sent", st.Sent,
			"per_second", int(rate), "position", st.Cursor.String())
	}
}

// Close removes the bar before the final log lines.
func (p *progressReporter) Close() {
	if p.bar != nil {
		p.bar.Clear()
		p.bar.Close()
	}
}
