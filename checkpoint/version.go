package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"

	"siem-recovery/recovery"
)

// newerError: the checkpoint was written by a later siem-recovery, whose
// state this one cannot read without losing what it does not know.
type newerError struct{ version int }

func (e newerError) Error() string {
	return fmt.Sprintf("state version %d; this siem-recovery reads up to %d", e.version, recovery.StateVersion)
}

// decodeState reads a stored state of any version this build knows,
// upgrading an older one in memory; the next write stores it in the
// current version.
func decodeState(v []byte) (recovery.State, error) {
	var st recovery.State
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(v, &head); err != nil {
		return st, fmt.Errorf("its state does not decode: %w", err)
	}
	if head.Version > recovery.StateVersion {
		return st, newerError{head.Version}
	}
	if head.Version < 2 {
		var err error
		if v, err = upgradeV1(v); err != nil {
			return st, fmt.Errorf("its state (version 1) does not decode: %w", err)
		}
	}
	if err := json.Unmarshal(v, &st); err != nil {
		return st, fmt.Errorf("its state does not decode: %w", err)
	}
	return st, nil
}

// upgradeV1 rewrites a version 1 state (written before --by: no "version"
// key) as version 2. Each pass's cursor held every source's fields side by
// side; the source's own fields kept their names in its token, so the old
// cursor becomes the token as it is and the run resumes where it stood.
// Each pass gains its scope (the window, by date, the only time then) and,
// when it had not recorded one, the time it reached (a plain-paging
// cursor's millisecond). A pass that version 1 began has no horizon: it
// completes as it did then, with no sweep after it.
func upgradeV1(v []byte) ([]byte, error) {
	var st map[string]json.RawMessage
	if err := json.Unmarshal(v, &st); err != nil {
		return nil, err
	}
	scope, err := json.Marshal(map[string]json.RawMessage{"window": st["window"]})
	if err != nil {
		return nil, err
	}
	upgrade := func(p map[string]json.RawMessage) error {
		p["scope"] = scope
		old := bytes.TrimSpace(p["cursor"])
		if len(old) == 0 || string(old) == "null" || string(old) == "{}" {
			p["cursor"] = json.RawMessage("{}")
			return nil
		}
		var at struct {
			Timestamp int64 `json:"timestamp"`
		}
		if err := json.Unmarshal(old, &at); err != nil {
			return fmt.Errorf("cursor: %w", err)
		}
		var reached int64
		_ = json.Unmarshal(p["reached"], &reached)
		if reached == 0 && at.Timestamp != 0 {
			p["reached"] = json.RawMessage(fmt.Sprint(at.Timestamp))
		}
		c, err := json.Marshal(recovery.Cursor{Token: old})
		p["cursor"] = c
		return err
	}
	if err := upgrade(st); err != nil { // the window's own pass is embedded
		return nil, err
	}
	if raw, ok := st["top_ups"]; ok {
		var tops []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &tops); err != nil {
			return nil, fmt.Errorf("top_ups: %w", err)
		}
		for _, t := range tops {
			if err := upgrade(t); err != nil {
				return nil, err
			}
		}
		if st["top_ups"], err = json.Marshal(tops); err != nil {
			return nil, err
		}
	}
	st["version"] = json.RawMessage("2")
	return json.Marshal(st)
}
