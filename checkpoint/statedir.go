package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"time"

	"siem-recovery/recovery"
)

// appDir is the directory of siem-recovery's own in a user's state
// directory.
const appDir = "siem-recovery"

// StateDir is where checkpoints live when --checkpoint is not given: the
// user's state directory, so that the same command finds the same
// checkpoint from any working directory. goos is runtime.GOOS; getenv and
// home are os.Getenv and os.UserHomeDir (parameters, so every platform's
// choice can be tested on any).
//
//   - $XDG_STATE_HOME/siem-recovery when XDG_STATE_HOME is set (an absolute
//     path, as the XDG spec requires), on every system but Windows;
//   - Windows: %LOCALAPPDATA%\siem-recovery (local, not roaming: a
//     checkpoint belongs to one machine's runs);
//   - macOS: ~/Library/Application Support/siem-recovery, where macOS keeps
//     what applications need to go on (it has no state directory);
//   - elsewhere: ~/.local/state/siem-recovery, the XDG default.
func StateDir(goos string, getenv func(string) string, home func() (string, error)) (string, error) {
	if goos == "windows" {
		if d := getenv("LOCALAPPDATA"); d != "" {
			return filepath.Join(d, appDir), nil
		}
		return "", errors.New("%LOCALAPPDATA% is not set")
	}
	if d := getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, appDir), nil
	}
	h, err := home()
	if err != nil {
		return "", err
	}
	if goos == "darwin" {
		return filepath.Join(h, "Library", "Application Support", appDir), nil
	}
	return filepath.Join(h, ".local", "state", appDir), nil
}

// FileName is the name of the default checkpoint of this recovery: its
// window, readable, "created" for a window by created, then a short hash
// of the exact window, its time, source and filter, e.g.
// 20240514T080000Z-20240514T090000Z-3f2a9c1b04de.db or
// 20240514T080000Z-20240514T090000Z-created-91c0d2e7aa13.db. Another
// window, time, source or filter gets another file; the same recovery,
// the same.
func (id Identity) FileName() string {
	if id.Follow { // a feed has no window: its source, filters and data types name it
		sum := sha256.Sum256([]byte("follow\n" + id.Fingerprint))
		return "follow-" + hex.EncodeToString(sum[:6]) + ".db"
	}
	const stamp = "20060102T150405Z"
	start := time.UnixMilli(id.Window.Start).UTC().Format(stamp)
	end := time.UnixMilli(id.Window.End).UTC().Format(stamp)
	key, by := id.Window.String()+"\n"+id.Fingerprint, ""
	if id.By != recovery.ByDate { // a window by date keeps the name it had before --by
		key += "\nby " + id.By.String()
		by = id.By.String() + "-"
	}
	sum := sha256.Sum256([]byte(key))
	return start + "-" + end + "-" + by + hex.EncodeToString(sum[:6]) + ".db"
}
