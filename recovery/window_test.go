package recovery

import (
	"strings"
	"testing"
)

func TestParseTime(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "2024-05-01T10:00:00Z", want: 1714557600000},
		{in: "2024-05-01T12:00:00+02:00", want: 1714557600000},
		{in: "2024-05-01T10:00:00.123Z", want: 1714557600123},
		{in: "1714557600000", want: 1714557600000},
		{in: " 1714557600000 ", want: 1714557600000},
		{in: "", wantErr: "empty date"},
		{in: "yesterday", wantErr: `"yesterday" is neither an RFC 3339 date`},
		{in: "2024-05-01", wantErr: "neither an RFC 3339 date"},
		// A number that is a date only in another unit is refused with
		// the value in milliseconds, never read as 1970 or year 50000.
		{in: "1795132800", wantErr: `"1795132800" is epoch seconds, not milliseconds (1795132800000 ms, 2026-11-20T00:00:00.000Z)`},
		{in: "1795132800000000", wantErr: `"1795132800000000" is epoch microseconds, not milliseconds (1795132800000 ms, 2026-11-20T00:00:00.000Z)`},
		// Before MCAS existed, as a number or as a date, before 1970 too.
		{in: "1000", wantErr: `"1000" is 1970-01-01T00:00:01.000Z, before 2015, when MCAS began`},
		{in: "-5", wantErr: `"-5" is 1969-12-31T23:59:59.995Z, before 2015, when MCAS began`},
		{in: "2014-12-31T23:59:59.999Z", wantErr: `"2014-12-31T23:59:59.999Z" is 2014-12-31T23:59:59.999Z, before 2015`},
		{in: "1969-07-20T20:17:40Z", wantErr: "before 2015, when MCAS began"},
		{in: "2015-01-01T00:00:00Z", want: 1420070400000},
		{in: "1420070400000", want: 1420070400000},
		{in: "999999999999999999", wantErr: "after the year 9999"},
	}
	for _, tt := range tests {
		got, err := ParseTime(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseTime(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseTime(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseAlert(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Window
		wantErr string
	}{
		{name: "rfc3339", in: `{"startDate":"2024-05-01T10:00:00Z","endDate":"2024-05-01T11:00:00Z"}`, want: Window{1714557600000, 1714561200000}},
		{name: "epoch numbers", in: `{"startDate":1714557600000,"endDate":1714561200000}`, want: Window{1714557600000, 1714561200000}},
		{name: "epoch strings", in: `{"startDate":"1714557600000","endDate":"1714561200000"}`, want: Window{1714557600000, 1714561200000}},
		{name: "start/end keys", in: `{"start":"2024-05-01T10:00:00Z","end":1714561200000}`, want: Window{1714557600000, 1714561200000}},
		{name: "startDate wins over start", in: `{"startDate":1714557600000,"start":1714557600001,"endDate":1714561200000}`, want: Window{1714557600000, 1714561200000}},
		// A key given twice counts the first time, as in an activity
		// (docs/delivery.md), whichever way the second one goes.
		{name: "startDate twice", in: `{"startDate":1714557600000,"endDate":1714561200000,"startDate":1714560000000}`, want: Window{1714557600000, 1714561200000}},
		{name: "endDate twice", in: `{"startDate":1714557600000,"endDate":1714561200000,"endDate":1714564800000}`, want: Window{1714557600000, 1714561200000}},
		{name: "a bad second startDate", in: `{"startDate":"2024-05-01T10:00:00Z","startDate":"soon","endDate":1714561200000}`, want: Window{1714557600000, 1714561200000}},
		{name: "null first", in: `{"startDate":null,"startDate":1714560000000,"start":1714557600000,"endDate":1714561200000}`, want: Window{1714557600000, 1714561200000}},
		{name: "not json", in: `startDate=1`, wantErr: "not a JSON object"},
		{name: "an array", in: `[{"startDate":1714557600000}]`, wantErr: "not a JSON object"},
		{name: "text after", in: `{"startDate":1714557600000,"endDate":1714561200000} x`, wantErr: "not a JSON object"},
		{name: "no end", in: `{"startDate":1714557600000}`, wantErr: `no "endDate" (or "end") key`},
		{name: "bad date", in: `{"startDate":"soon","endDate":3}`, wantErr: `startDate: "soon" is neither`},
		{name: "fractional epoch", in: `{"startDate":1.5,"endDate":3}`, wantErr: "startDate: 1.5 is not a whole"},
		{name: "bool", in: `{"startDate":true,"endDate":3}`, wantErr: "startDate: true is neither"},
		{name: "epoch seconds", in: `{"startDate":1714557600,"endDate":1714561200000}`, wantErr: `startDate: "1714557600" is epoch seconds`},
		{name: "epoch seconds as a string", in: `{"startDate":"1714557600000","endDate":"1714561200"}`, wantErr: `endDate: "1714561200" is epoch seconds`},
		{name: "before MCAS", in: `{"startDate":"1999-01-01T00:00:00Z","endDate":1714561200000}`, wantErr: `startDate: "1999-01-01T00:00:00Z" is 1999-01-01T00:00:00.000Z, before 2015`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAlert([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestWindowHalfOpen(t *testing.T) {
	w := Window{Start: 1000, End: 2000}
	for ts, want := range map[int64]bool{999: false, 1000: true, 1999: true, 2000: false} {
		if got := w.Contains(ts); got != want {
			t.Errorf("Contains(%d) = %v, want %v", ts, got, want)
		}
	}
	if err := (Window{Start: 5, End: 5}).Validate(); err == nil || !strings.Contains(err.Error(), "at or before it starts") {
		t.Errorf("empty window: Validate() = %v", err)
	}
	if got := w.Fraction(1500); got != 0.5 {
		t.Errorf("Fraction(1500) = %v, want 0.5", got)
	}
}
