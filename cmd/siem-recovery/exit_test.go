package main

import (
	le "encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs:\n got: %s\nwant: %s", path, got, want)
	}
}

// lastLine is the error line the binary prints last on stderr.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1] + "\n"
}

const (
	goodAlert  = `{"startDate":"2024-05-14T08:00:00Z","endDate":"2024-05-14T09:00:00Z"}`
	goodExport = `{"_id":"a","timestamp":1715673600000,"description":"x"}` + "\n" +
		`{"_id":"b","timestamp":1715673600001,"description":"y"}` + "\n"
)

// TestExitCodes runs the binary on each kind of bad input and checks the
// exit code and the exact line it prints (golden files under
// testdata/run/<case>/stderr). Each case runs in its own directory holding
// alert.json and export.jsonl, so paths in messages are stable.
func TestExitCodes(t *testing.T) {
	base := []string{"run", "--alert", "alert.json", "--source", "file:export.jsonl", "--checkpoint", "cp.db"}
	tests := []struct {
		name  string
		args  []string
		files map[string]string
		env   []string
		setup func(t *testing.T, dir string)
		code  int
		// normalize, if set, rewrites what varies in the line before it
		// is compared with its golden file.
		normalize func(string) string
	}{
		{name: "alert-missing", args: []string{"run", "--alert", "nope.json", "--source", "file:export.jsonl"}, code: exitUsage},
		{name: "alert-not-json", args: base, files: map[string]string{"alert.json": "startDate: today"}, code: exitUsage},
		{name: "alert-no-end", args: base, files: map[string]string{"alert.json": `{"startDate":"2024-05-14T08:00:00Z"}`}, code: exitUsage},
		{name: "alert-bad-date", args: base, files: map[string]string{"alert.json": `{"startDate":"14/05/2024","endDate":"2024-05-14T09:00:00Z"}`}, code: exitUsage},
		{name: "alert-reversed", args: base, files: map[string]string{"alert.json": `{"startDate":"2024-05-14T09:00:00Z","endDate":"2024-05-14T08:00:00Z"}`}, code: exitUsage},
		{name: "window-empty", args: []string{"run", "--start", "1715673600000", "--end", "2024-05-14T08:00:00Z", "--source", "file:export.jsonl"}, code: exitUsage},
		// What date +%s prints, read as milliseconds, is a window in 1970.
		{name: "start-epoch-seconds", args: []string{"run", "--start", "1795132800", "--end", "1795136400000", "--source", "file:export.jsonl"}, code: exitUsage},
		{name: "end-epoch-microseconds", args: []string{"run", "--start", "1795132800000", "--end", "1795136400000000", "--source", "file:export.jsonl"}, code: exitUsage},
		{name: "start-before-1970", args: []string{"run", "--start", "1969-12-31T00:00:00Z", "--end", "2024-05-14T08:00:00Z", "--source", "file:export.jsonl"}, code: exitUsage},
		{name: "start-before-mcas", args: []string{"run", "--start", "1000", "--end", "2024-05-14T08:00:00Z", "--source", "file:export.jsonl"}, code: exitUsage},
		{name: "alert-epoch-seconds", args: base, files: map[string]string{"alert.json": `{"startDate":1715673600,"endDate":1715677200}`}, code: exitUsage},
		{name: "max-duration-negative", args: base, env: []string{"SIEM_RECOVERY_MAX_DURATION=-5s"}, code: exitUsage},
		{name: "max-duration-negative-flag", args: append(base, "--max-duration", "-1m"), code: exitUsage},
		{name: "stopped-exit-code-taken", args: append(base, "--stopped-exit-code", "5"), code: exitUsage},
		{name: "window-missing", args: []string{"run", "--source", "file:export.jsonl"}, code: exitUsage},
		{name: "unknown-flag", args: []string{"run", "--alrt", "alert.json"}, code: exitUsage},
		{name: "unknown-command", args: []string{"recover"}, code: exitUsage},
		{name: "filter-date", args: append(base, "--filter", "filter.json"), files: map[string]string{"filter.json": `{"date":{"gte":0}}`}, code: exitUsage},
		{name: "filter-missing", args: append(base, "--filter", "nope.json"), code: exitUsage},
		{name: "source-missing", args: []string{"run", "--alert", "alert.json"}, code: exitUsage},
		{name: "source-plain-http", args: []string{"run", "--alert", "alert.json", "--source", "http://contoso.portal.cloudappsecurity.com"}, code: exitUsage},
		{name: "page-size-zero", args: append(base, "--page-size", "0"), code: exitUsage},
		{name: "log-format-unknown", args: append(base, "--log-format", "xml"), code: exitUsage},
		{name: "positional-argument", args: append(base, "extra"), code: exitUsage},
		{name: "exclude-ids-missing", args: append(base, "--exclude-ids", "nope.txt"), code: exitUsage},
		{name: "source-unknown-scheme", args: []string{"run", "--alert", "alert.json", "--source", "ftp://x.example"}, code: exitUsage},
		// Neither a token nor an Entra ID application (SPEC §2): a usage
		// error naming both; --auth token without one is a missing token.
		{name: "token-missing", args: []string{"run", "--alert", "alert.json", "--source", "https://contoso.portal.cloudappsecurity.com", "--checkpoint", "cp.db"}, code: exitUsage},
		{name: "auth-token-missing", args: []string{"run", "--alert", "alert.json", "--source", "https://contoso.portal.cloudappsecurity.com", "--checkpoint", "cp.db", "--auth", "token"}, code: exitInvalidToken},
		{name: "auth-unknown", args: []string{"run", "--alert", "alert.json", "--source", "https://contoso.portal.cloudappsecurity.com", "--checkpoint", "cp.db", "--auth", "kerberos"}, code: exitUsage},
		{name: "auth-entra-without-env", args: []string{"run", "--alert", "alert.json", "--source", "https://contoso.portal.cloudappsecurity.com", "--checkpoint", "cp.db", "--auth", "entra"}, code: exitInvalidToken},
		{name: "auth-entra-and-token", args: []string{"run", "--alert", "alert.json", "--source", "https://contoso.portal.cloudappsecurity.com", "--checkpoint", "cp.db", "--auth", "entra", "--token", strings.Repeat("x", 64)}, env: []string{"AZURE_TENANT_ID=t", "AZURE_CLIENT_ID=c", "AZURE_CLIENT_SECRET=SECRETS"}, code: exitUsage},
		{name: "token-file-missing", args: []string{"run", "--alert", "alert.json", "--source", "https://contoso.portal.cloudappsecurity.com", "--checkpoint", "cp.db", "--token-file", "nope.txt"}, code: exitInvalidToken},
		{name: "token-given-twice", args: []string{"run", "--alert", "alert.json", "--source", "https://contoso.portal.cloudappsecurity.com", "--checkpoint", "cp.db", "--token-file", "alert.json", "--token", "abc"}, code: exitUsage},
		{name: "rate-limit-zero", args: []string{"run", "--alert", "alert.json", "--source", "https://contoso.portal.cloudappsecurity.com", "--checkpoint", "cp.db", "--token", strings.Repeat("x", 64), "--rate-limit", "0"}, code: exitUsage},
		// A token pasted into the URL is refused and never shown.
		{name: "source-token-in-url", args: []string{"run", "--alert", "alert.json", "--source", "https://contoso.portal.cloudappsecurity.com/api/v1/activities/?token=SECRETQ"}, code: exitUsage},
		{name: "export-missing", args: []string{"run", "--alert", "alert.json", "--source", "file:nope.jsonl", "--checkpoint", "cp.db"}, code: exitUsage},
		{name: "export-malformed-line", args: base, files: map[string]string{"export.jsonl": goodExport + `{"_id":"c","timestamp":` + "\n"}, code: exitUsage},
		{name: "format-unknown", args: append(base, "--format", "leef"), code: exitUsage},
		{name: "udp-rate-negative", args: append(base, "--sink", "udp://127.0.0.1:514", "--udp-rate", "-1"), code: exitUsage},
		{name: "sink-write-fails", args: append(base, "--sink", "file:/dev/full"), code: exitGeneral},
		{name: "checkpoint-corrupt", args: base, files: map[string]string{"cp.db": "not a database"}, code: exitCheckpointUnusable},
		{name: "checkpoint-other-window", args: base, code: exitCheckpointUnusable, setup: func(t *testing.T, dir string) {
			r := runBin(t, dir, nil, "run", "--start", "2024-05-14T07:00:00Z", "--end", "2024-05-14T09:00:00Z", "--source", "file:export.jsonl", "--checkpoint", "cp.db")
			wantCode(t, r, 0)
		}},
		// The same window by another time is another recovery.
		{name: "checkpoint-other-by", args: append(base, "--by", "created"), files: map[string]string{"export.jsonl": strings.ReplaceAll(goodExport, `,"desc`, `,"created":1715673601000,"desc`)},
			code: exitCheckpointUnusable, setup: func(t *testing.T, dir string) {
				r := runBin(t, dir, nil, base...)
				wantCode(t, r, 0)
			}},
		{name: "by-unknown", args: append(base, "--by", "timestamp"), code: exitUsage},
		{name: "parallel-too-many", args: append(base, "--parallel", "12"), code: exitUsage},
		{name: "parallel-not-a-number", args: append(base, "--parallel", "max"), code: exitUsage},
		{name: "settle-negative", args: []string{"run", "--alert", "alert.json", "--source", "https://contoso.eu2.portal.cloudappsecurity.com", "--token", strings.Repeat("t", 64), "--settle", "-1h"}, code: exitUsage},
		{name: "export-without-created", args: append(base, "--by", "created"), code: exitUsage},
		{name: "checkpoint-other-export", args: base, code: exitCheckpointUnusable, setup: func(t *testing.T, dir string) {
			r := runBin(t, dir, nil, base...)
			wantCode(t, r, 0)
			writeFile(t, dir, "export.jsonl", `{"_id":"z","timestamp":1715673600000}`+"\n")
		}},
		// Argument files are capped (issue 16): an endless file fails fast
		// with the cap and the flag named, instead of growing to gigabytes.
		{name: "alert-endless", args: []string{"run", "--alert", "/dev/zero", "--source", "file:export.jsonl", "--checkpoint", "cp.db"}, code: exitUsage},
		{name: "filter-endless", args: append(base, "--filter", "/dev/urandom"), code: exitUsage},
		{name: "token-file-endless", args: []string{"run", "--alert", "alert.json", "--source", "https://contoso.portal.cloudappsecurity.com", "--checkpoint", "cp.db", "--token-file", "/dev/zero"}, code: exitInvalidToken},
		{name: "exclude-ids-too-large", args: append(base, "--exclude-ids", "ids.txt"), code: exitUsage, setup: func(t *testing.T, dir string) {
			sparse(t, filepath.Join(dir, "ids.txt"), 3<<30)
		}},
		{name: "ca-file-endless", args: append(base, "--sink", "tls://127.0.0.1:1", "--ca-file", "/dev/zero"), code: exitUsage},
		// A named pipe as the export is refused at once: before, the run
		// drained it to fingerprint it, then waited for ever on a second open.
		{name: "source-fifo", args: []string{"run", "--alert", "alert.json", "--source", "file:pipe", "--checkpoint", "cp.db"}, code: exitUsage, setup: func(t *testing.T, dir string) {
			mkfifo(t, filepath.Join(dir, "pipe"))
		}},
		{name: "source-directory", args: []string{"run", "--alert", "alert.json", "--source", "file:.", "--checkpoint", "cp.db"}, code: exitUsage},
		// A pipe nobody writes blocks in open(2); --max-duration still ends the run.
		{name: "filter-fifo-no-writer", args: append(base, "--filter", "pipe", "--max-duration", "300ms"), code: exitStopped, setup: func(t *testing.T, dir string) {
			mkfifo(t, filepath.Join(dir, "pipe"))
		}},
		// A damaged page made bbolt panic (exit 2, a stack trace); the
		// checkpoint is now checked before bbolt reads it.
		{name: "checkpoint-damaged-freelist", args: base, code: exitCheckpointUnusable, setup: func(t *testing.T, dir string) {
			r := runBin(t, dir, nil, append(base, "--max-duration", "1ns")...)
			wantCode(t, r, exitStopped)
			damageFreelist(t, filepath.Join(dir, "cp.db"))
		}},
		// A byte of the checksum's key name read as a checkpoint older
		// than the checksum, unchecked (issue 22).
		{name: "checkpoint-checksum-key-damaged", args: base, code: exitCheckpointUnusable, setup: func(t *testing.T, dir string) {
			r := runBin(t, dir, nil, append(base, "--max-duration", "1ns")...)
			wantCode(t, r, exitStopped)
			replaceBytes(t, filepath.Join(dir, "cp.db"), "state.sha256", "state.sha257")
		}},
		// bbolt read the older meta page without a word (issue 22).
		{name: "checkpoint-newest-meta-damaged", args: base, code: exitCheckpointUnusable, setup: func(t *testing.T, dir string) {
			r := runBin(t, dir, nil, append(base, "--max-duration", "1ns")...)
			wantCode(t, r, exitStopped)
			damageNewestMeta(t, filepath.Join(dir, "cp.db"))
		}, normalize: func(line string) string { // how many transactions a run makes is not the point
			return regexp.MustCompile(`\(page \d\)|earlier \(\d+\)`).ReplaceAllStringFunc(line, func(m string) string {
				return regexp.MustCompile(`\d+`).ReplaceAllString(m, "N")
			})
		}},
		{name: "checkpoint-fifo", args: base, code: exitCheckpointUnusable, setup: func(t *testing.T, dir string) {
			mkfifo(t, filepath.Join(dir, "cp.db"))
		}},
		{name: "checkpoint-lock-symlink", args: base, code: exitCheckpointUnusable, setup: func(t *testing.T, dir string) {
			writeFile(t, dir, "victim.conf", "important\n")
			if err := os.Symlink("victim.conf", filepath.Join(dir, "cp.db.lock")); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if got, _ := os.ReadFile(filepath.Join(dir, "victim.conf")); string(got) != "important\n" {
					t.Errorf("the run wrote through the lock's link: victim.conf holds %q", got)
				}
			})
		}},
		{name: "checkpoint-locked", args: base, code: exitCheckpointUnusable, setup: func(t *testing.T, dir string) {
			holdLock(t, filepath.Join(dir, "cp.db.lock"), 4242)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "alert.json", goodAlert)
			writeFile(t, dir, "export.jsonl", goodExport)
			for name, content := range tt.files {
				writeFile(t, dir, name, content)
			}
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			var before []byte
			if tt.code == exitCheckpointUnusable {
				before = regularContent(t, filepath.Join(dir, "cp.db"))
			}
			r := runBin(t, dir, tt.env, tt.args...)
			wantCode(t, r, tt.code)
			line := lastLine(r.stderr)
			if tt.normalize != nil {
				line = tt.normalize(line)
			}
			golden(t, filepath.Join("run", tt.name, "stderr"), line)
			if tt.code == exitCheckpointUnusable {
				after := regularContent(t, filepath.Join(dir, "cp.db"))
				if string(before) != string(after) {
					t.Fatal("the checkpoint changed")
				}
			}
			if tt.code == exitUsage && strings.Contains(r.stdout, "CEF:") {
				t.Fatalf("a usage error sent events: %s", r.stdout)
			}
			// A run that fails before its source answered (a missing or
			// malformed token, a bad flag) leaves no checkpoint and no lock
			// behind (issue 28); one that existed is never removed.
			if tt.setup == nil && tt.files["cp.db"] == "" && (tt.code == exitUsage || tt.code == exitInvalidToken) {
				wantNoCheckpoint(t, filepath.Join(dir, "cp.db"))
			}
		})
	}
}

// sparse makes a file of size bytes that takes no room on disk.
func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// damageFreelist gives the freelist page of the bbolt file at path an
// impossible count, as a torn or flipped write could.
func damageFreelist(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(le.LittleEndian.Uint32(data[16+8:]))
	meta := 16 // the meta of the later transaction: bbolt reads that one
	if le.LittleEndian.Uint64(data[pageSize+16+48:]) > le.LittleEndian.Uint64(data[16+48:]) {
		meta = pageSize + 16
	}
	free := int(le.LittleEndian.Uint64(data[meta+32:])) * pageSize
	le.LittleEndian.PutUint16(data[free+10:], 0xffff) // the count is in the first element...
	le.LittleEndian.PutUint64(data[free+16:], 1<<40)  // ...which says 2^40 ids
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceBytes replaces every old in the file at path with new, of the
// same length.
func replaceBytes(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s holds no %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(data), old, new)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// damageNewestMeta flips a bit of the newest meta page of the bbolt file
// at path, as a disk could: its checksum no longer matches.
func damageNewestMeta(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(le.LittleEndian.Uint32(data[16+8:]))
	meta := 16
	if le.LittleEndian.Uint64(data[pageSize+16+48:]) > le.LittleEndian.Uint64(data[16+48:]) {
		meta = pageSize + 16
	}
	data[meta+16] ^= 0x40 // the root bucket's page id
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// regularContent is the content of path if it is a regular file (reading
// a pipe would wait for a writer), else nil.
func regularContent(t *testing.T, path string) []byte {
	t.Helper()
	if info, err := os.Stat(path); err != nil || !info.Mode().IsRegular() {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
