package recovery

import (
	"strings"
	"testing"
)

func TestReadIDSet(t *testing.T) {
	in := strings.Join([]string{
		"# ids exported from the SIEM",
		"1511373015679_167ae3eb-ed33-454a-b548-c2ed6cea6ef0",
		"",
		`2017-11-22T17:50:04.000Z CEF:0|MCAS|SIEM_Agent|0.111.85|EVENT_CATEGORY_LOGOUT|Log out|0|externalId=id-from-cef rt=1511373004000 msg=Log out`,
		`<134>1 2024-05-14T08:00:00.000Z host siem-recovery - - - CEF:0|MCAS|SIEM_Agent|0.1.0|X|Y|0|externalId=id-last`,
		"1511373015679_167ae3eb-ed33-454a-b548-c2ed6cea6ef0",
		`{"_id":"id-json","timestamp":1}`,
	}, "\n")
	s, err := ReadIDSet(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 4 {
		t.Fatalf("Len = %d, want 4", s.Len())
	}
	for id, want := range map[string]bool{
		"1511373015679_167ae3eb-ed33-454a-b548-c2ed6cea6ef0": true,
		"id-from-cef": true, "id-last": true, "id-json": true, "id-from": false, "": false, "rt=1511373004000": false,
	} {
		if got := s.Contains(id); got != want {
			t.Errorf("Contains(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestReadIDSetRefusesOtherFiles(t *testing.T) {
	for _, in := range []string{`{"id":"x"}`, "a b", "x|y", "CEF:0|MCAS|externalId= rt=1"} {
		if _, err := ReadIDSet(strings.NewReader("ok-id\n" + in)); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("ReadIDSet(%q) = %v, want an error naming line 2", in, err)
		}
	}
}
