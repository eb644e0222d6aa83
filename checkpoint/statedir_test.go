package checkpoint

import (
	"errors"
	"path/filepath"
	"testing"

	"siem-recovery/recovery"
)

func TestStateDirPerPlatform(t *testing.T) {
	home := func() (string, error) { return "/home/ops", nil }
	for _, tc := range []struct {
		goos string
		env  map[string]string
		want string
	}{
		{"linux", nil, "/home/ops/.local/state/siem-recovery"},
		{"linux", map[string]string{"XDG_STATE_HOME": "/var/lib/siem-recovery"}, "/var/lib/siem-recovery/siem-recovery"},
		{"linux", map[string]string{"XDG_STATE_HOME": "relative/state"}, "/home/ops/.local/state/siem-recovery"}, // ignored, as the XDG spec says
		{"darwin", nil, "/home/ops/Library/Application Support/siem-recovery"},
		{"darwin", map[string]string{"XDG_STATE_HOME": "/state"}, "/state/siem-recovery"},
		{"freebsd", nil, "/home/ops/.local/state/siem-recovery"},
		{"windows", map[string]string{"LOCALAPPDATA": `C:\Users\ops\AppData\Local`, "XDG_STATE_HOME": "/state"}, filepath.Join(`C:\Users\ops\AppData\Local`, "siem-recovery")},
	} {
		got, err := StateDir(tc.goos, func(k string) string { return tc.env[k] }, home)
		if err != nil || got != tc.want {
			t.Errorf("%s %v: %q, %v; want %q", tc.goos, tc.env, got, err, tc.want)
		}
	}
	if _, err := StateDir("windows", func(string) string { return "" }, home); err == nil {
		t.Error("windows without LOCALAPPDATA: no error")
	}
	noHome := func() (string, error) { return "", errors.New("$HOME is not defined") }
	if _, err := StateDir("linux", func(string) string { return "" }, noHome); err == nil {
		t.Error("linux without a home: no error")
	}
}

// The default checkpoint's name shows the window and differs for any
// other window, source or filter.
func TestFileNameNamesTheRecovery(t *testing.T) {
	id := Identity{Window: recovery.Window{Start: 1715673600000, End: 1715677200000}, Source: "file:a.jsonl", Fingerprint: "fp1"}
	name := id.FileName()
	if len(name) != len("20240514T080000Z-20240514T090000Z-")+12+len(".db") || name[:34] != "20240514T080000Z-20240514T090000Z-" {
		t.Fatalf("name %q", name)
	}
	if id.FileName() != name {
		t.Fatal("the same recovery got another name")
	}
	others := []Identity{id, id, id, id}
	others[0].Fingerprint = "fp2"
	others[1].Window.End++ // one millisecond: the stamp is the same, the recovery is not
	others[2].Window.Start -= 1000
	others[3].By = recovery.ByCreated
	if got := others[3].FileName(); got[:42] != "20240514T080000Z-20240514T090000Z-created-" || len(got) != 42+12+3 {
		t.Errorf("by created: %q", got)
	}
	for _, o := range others {
		if o.FileName() == name {
			t.Errorf("%v has the same name as %v: %s", o, id, name)
		}
	}
}
