package recovery

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// jsonRecord is what a JSON line the tool sends (or a SIEM exported) says
// of its record, whatever the kind: an MCAS activity or alert carries its
// _id, timestamp and created; a CloudAppEvents row travels as the
// streaming API's record, its columns under properties.
type jsonRecord struct {
	ID         string      `json:"_id"`
	Timestamp  json.Number `json:"timestamp"`
	Created    json.Number `json:"created"`
	Properties *struct {
		ReportID  string `json:"ReportId"`
		Timestamp string `json:"Timestamp"`
	} `json:"properties"`
}

// RecordOfJSON reads the id of the record a JSON line holds, and its time
// (Unix ms; 0 when it has none) and when it was saved (0 when it does not
// say): an activity's or alert's "_id", "timestamp" and "created", or a
// streaming API record's properties.ReportId and properties.Timestamp.
func RecordOfJSON(line []byte) (id string, ts, created int64, err error) {
	var r jsonRecord
	if err := json.Unmarshal(line, &r); err != nil {
		return "", 0, 0, err
	}
	switch {
	case r.ID != "":
		ts, _ = strconv.ParseInt(string(r.Timestamp), 10, 64)
		created, _ = strconv.ParseInt(string(r.Created), 10, 64)
		return r.ID, ts, created, nil
	case r.Properties != nil && r.Properties.ReportID != "":
		if t, err := time.Parse(time.RFC3339Nano, r.Properties.Timestamp); err == nil {
			ts = t.UnixMilli()
		}
		return r.Properties.ReportID, ts, 0, nil
	}
	return "", 0, 0, errNoRecordID
}

var errNoRecordID = errors.New(`no "_id" (nor a streaming record's properties.ReportId)`)
