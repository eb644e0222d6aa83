package sink

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"siem-recovery/internal/swar"
	"siem-recovery/recovery"
)

// DefaultPortalURL is the portal the cs1 link of a CEF line points to when
// Formatter.PortalURL is empty. The tenant's own portal
// (https://TENANT.REGION.portal.cloudappsecurity.com) is better: pass it.
const DefaultPortalURL = "https://portal.cloudappsecurity.com"

// isoMillis is the layout of the timestamp that starts a line without a
// syslog header (the MCAS agent's own output) and of the RFC 5424 header.
const isoMillis = "2006-01-02T15:04:05.000Z"

// Formatter renders activities the way the MCAS SIEM agent does. Its zero
// value is usable; its methods append to dst and allocate only when dst
// must grow, so a caller that reuses its buffer formats without garbage.
type Formatter struct {
	// Version is the Device Version of the CEF header: this tool's version.
	Version string
	// PortalURL is the tenant's portal, scheme and host, e.g.
	// https://contoso.portal.cloudappsecurity.com; cs1 links the activity
	// there. A bare host gets https://. Empty means DefaultPortalURL.
	PortalURL string
}

// AppendCEF appends a's CEF line (SPEC §5), without timestamp prefix,
// syslog header or line end. The line never holds a CR or LF: the header
// escapes \ and | and the extension escapes \, = and CR/LF, as ArcSight
// CEF requires; a CR or LF in a header field is written \r or \n too.
func (f Formatter) AppendCEF(dst []byte, a recovery.Activity) []byte {
	if a.Kind == recovery.KindAlert {
		return f.appendAlertCEF(dst, a)
	}
	dst = append(dst, "CEF:0|MCAS|SIEM_Agent|"...)
	dst = appendHeaderValue(dst, f.Version)
	dst = append(dst, '|')
	sig := a.EventTypeName
	if sig == "" {
		sig = a.EventTypeValue
	}
	dst = appendHeaderValue(dst, sig)
	dst = append(dst, '|')
	name := a.Name
	if name == "" {
		name = recovery.ActivityName("", a.Description)
	}
	dst = appendHeaderValue(dst, name)
	dst = append(dst, "|0|externalId="...)
	dst = appendExtValue(dst, a.ID)
	dst = append(dst, " rt="...)
	dst = strconv.AppendInt(dst, a.Timestamp, 10)
	dst = append(dst, " start="...)
	dst = strconv.AppendInt(dst, a.Timestamp, 10)
	dst = append(dst, " end="...)
	dst = strconv.AppendInt(dst, a.Timestamp, 10)
	dst = append(dst, " msg="...)
	dst = appendExtValue(dst, a.Description)
	dst = append(dst, " suser="...)
	dst = appendExtValue(dst, a.UserName)
	dst = append(dst, " destinationServiceName="...)
	dst = appendExtValue(dst, a.AppName)
	ipv4, ipv6 := a.ClientIP, ""
	if strings.IndexByte(a.ClientIP, ':') >= 0 {
		ipv4, ipv6 = "", a.ClientIP
	}
	dst = append(dst, " dvc="...)
	dst = appendExtValue(dst, ipv4)
	dst = append(dst, " requestClientApplication="...)
	dst = appendExtValue(dst, a.UserAgent)
	dst = append(dst, " cs1Label=portalURL cs1="...)
	if a.Kind != recovery.KindCloudAppEvent { // a row of advanced hunting has no page in the MCAS portal
		dst = f.appendPortalLink(dst, a.ID)
	}
	dst = append(dst, " cs2Label=uniqueServiceAppIds cs2="...)
	dst = appendExtValue(dst, a.UniqueServiceAppIDs)
	dst = append(dst, " cs3Label=targetObjects cs3="...)
	dst = appendExtValue(dst, a.TargetObjects)
	dst = append(dst, " cs4Label=policyIDs cs4="...)
	dst = appendExtValue(dst, a.PolicyIDs)
	dst = append(dst, ` c6a1Label="Device IPv6 Address" c6a1=`...)
	dst = appendExtValue(dst, ipv6)
	return dst
}

// appendAlertCEF appends an alert's CEF line as the agent wrote its alert
// lines (SPEC §5; samples in defender-docs siem.md): signature the alert
// type id, Name the title, severity 3, externalId the alert's _id,
// start=end its timestamp and no rt, cn1 its riskScore, cs1 its page in
// the portal, cs3 the related activities, cs4 its policy ids. The agent's
// lines show no place for the alert's own severity: it is written last,
// as cs5 (label alertSeverity), where a parser keyed on the agent's keys
// passes over it (docs/delivery.md).
func (f Formatter) appendAlertCEF(dst []byte, a recovery.Activity) []byte {
	dst = append(dst, "CEF:0|MCAS|SIEM_Agent|"...)
	dst = appendHeaderValue(dst, f.Version)
	dst = append(dst, '|')
	dst = appendHeaderValue(dst, a.EventTypeName)
	dst = append(dst, '|')
	dst = appendHeaderValue(dst, a.Name)
	dst = append(dst, "|3|externalId="...)
	dst = appendExtValue(dst, a.ID)
	dst = append(dst, " start="...)
	dst = strconv.AppendInt(dst, a.Timestamp, 10)
	dst = append(dst, " end="...)
	dst = strconv.AppendInt(dst, a.Timestamp, 10)
	dst = append(dst, " msg="...)
	dst = appendExtValue(dst, a.Description)
	dst = append(dst, " suser="...)
	dst = appendExtValue(dst, a.UserName)
	dst = append(dst, " destinationServiceName="...)
	dst = appendExtValue(dst, a.AppName)
	dst = append(dst, " cn1Label=riskScore cn1="...)
	dst = appendExtValue(dst, a.RiskScore)
	dst = append(dst, " cs1Label=portalURL cs1="...)
	if a.URL != "" {
		dst = appendExtValue(dst, a.URL)
	} else {
		dst = f.appendAlertLink(dst, a.ID)
	}
	dst = append(dst, " cs2Label=uniqueServiceAppIds cs2="...)
	dst = appendExtValue(dst, a.UniqueServiceAppIDs)
	dst = append(dst, " cs3Label=relatedAudits cs3="...)
	dst = appendExtValue(dst, a.TargetObjects)
	dst = append(dst, " cs4Label=policyIDs cs4="...)
	dst = appendExtValue(dst, a.PolicyIDs)
	dst = append(dst, " cs5Label=alertSeverity cs5="...)
	return appendExtValue(dst, a.Severity)
}

// cefExternalID returns the activity id of a CEF line AppendCEF wrote
// (from "CEF:0|" on): the unescaped value of externalId, the first key of
// the extension, which begins after the header's seventh unescaped '|'.
func cefExternalID(line []byte) (string, bool) {
	if !bytes.HasPrefix(line, []byte("CEF:0|")) {
		return "", false
	}
	pipes, i := 0, 0
	for ; i < len(line) && pipes < 7; i++ {
		switch line[i] {
		case '\\':
			i++ // the escaped byte
		case '|':
			pipes++
		}
	}
	if pipes < 7 || i > len(line) {
		return "", false
	}
	ext, ok := bytes.CutPrefix(line[i:], []byte("externalId="))
	if !ok {
		return "", false
	}
	// rt= always follows an activity's id, start= an alert's (which has
	// no rt); inside the escaped id an '=' is "\=".
	end := bytes.Index(ext, []byte(" rt="))
	if alert := bytes.Index(ext, []byte(" start=")); alert > 0 && (end < 0 || alert < end) {
		end = alert
	}
	if end <= 0 {
		return "", false
	}
	return unescapeExtValue(ext[:end]), true
}

// unescapeExtValue undoes appendExtValue.
func unescapeExtValue(v []byte) string {
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v)
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\\' && i+1 < len(v) {
			i++
			switch c = v[i]; c {
			case 'r':
				c = '\r'
			case 'n':
				c = '\n'
			}
		}
		out = append(out, c)
	}
	return string(out)
}

// appendPortalLink appends the escaped cs1 value: the activity's page in
// the portal, https://HOST/#/audits?activity.id\=eq(ID,).
func (f Formatter) appendPortalLink(dst []byte, id string) []byte {
	portal := f.PortalURL
	if portal == "" {
		portal = DefaultPortalURL
	}
	portal = strings.TrimRight(portal, "/")
	if !strings.Contains(portal, "://") {
		dst = append(dst, "https://"...)
	}
	dst = appendExtValue(dst, portal)
	dst = append(dst, `/#/audits?activity.id\=eq(`...)
	dst = appendExtValue(dst, id)
	return append(dst, ",)"...)
}

// appendAlertLink appends the escaped cs1 value of an alert whose object
// gives no URL: its page in the portal, https://HOST/#/alerts/ID.
func (f Formatter) appendAlertLink(dst []byte, id string) []byte {
	portal := f.PortalURL
	if portal == "" {
		portal = DefaultPortalURL
	}
	portal = strings.TrimRight(portal, "/")
	if !strings.Contains(portal, "://") {
		dst = append(dst, "https://"...)
	}
	dst = appendExtValue(dst, portal)
	dst = append(dst, "/#/alerts/"...)
	return appendExtValue(dst, id)
}

// AppendJSON appends a's JSON object exactly as the source returned it.
// Only if it spans lines are its CR and LF bytes dropped: in valid JSON
// they can only be whitespace between tokens, so the object keeps its
// meaning and every other byte, and fits on one line.
func (f Formatter) AppendJSON(dst []byte, a recovery.Activity) []byte {
	raw := a.Raw
	for len(raw) > 0 {
		i := bytes.IndexAny(raw, "\r\n")
		if i < 0 {
			return append(dst, raw...)
		}
		dst = append(dst, raw[:i]...)
		raw = raw[i+1:]
	}
	return dst
}

// AppendTime appends the activity time ms (Unix milliseconds) the way the
// MCAS agent stamps its lines: 2017-11-22T17:50:04.000Z, in UTC. It is
// written digit by digit (time.Time.AppendFormat, which interprets its
// layout on every call, cost a tenth of the CPU of formatting a line);
// years outside 0000–9999 are left to AppendFormat.
func AppendTime(dst []byte, ms int64) []byte {
	t, ok := civil(ms)
	if !ok {
		return timeUTC(ms).AppendFormat(dst, isoMillis)
	}
	dst = append4(dst, t.year)
	dst = append(dst, '-')
	dst = append2(dst, t.month)
	dst = append(dst, '-')
	dst = append2(dst, t.day)
	dst = append(dst, 'T')
	dst = appendClock(dst, t)
	dst = append(dst, '.')
	dst = append(dst, byte('0'+t.milli/100), byte('0'+t.milli/10%10), byte('0'+t.milli%10))
	return append(dst, 'Z')
}

// appendStamp appends the RFC 3164 timestamp of ms, "Jan _2 15:04:05" in
// UTC.
func appendStamp(dst []byte, ms int64) []byte {
	t, ok := civil(ms)
	if !ok {
		return timeUTC(ms).AppendFormat(dst, "Jan _2 15:04:05")
	}
	dst = append(dst, months[3*(t.month-1):3*t.month]...)
	dst = append(dst, ' ')
	if t.day < 10 {
		dst = append(dst, ' ', byte('0'+t.day))
	} else {
		dst = append2(dst, t.day)
	}
	dst = append(dst, ' ')
	return appendClock(dst, t)
}

// appendClock appends t's time of day, hh:mm:ss.
func appendClock(dst []byte, t civilTime) []byte {
	dst = append2(dst, t.hour)
	dst = append(dst, ':')
	dst = append2(dst, t.min)
	dst = append(dst, ':')
	return append2(dst, t.sec)
}

const months = "JanFebMarAprMayJunJulAugSepOctNovDec"

// civilTime is a UTC calendar date and time of day.
type civilTime struct {
	year, month, day, hour, min, sec, milli int
}

// civil converts Unix milliseconds to the UTC calendar, for years 0000 to
// 9999 (ok is false outside them). The date is Howard Hinnant's
// civil_from_days, in the proleptic Gregorian calendar as package time
// uses.
func civil(ms int64) (civilTime, bool) {
	const minMs, maxMs = -62167219200000, 253402300800000 // 0000-01-01, 10000-01-01
	if ms < minMs || ms >= maxMs {
		return civilTime{}, false
	}
	days, rem := ms/86400000, ms%86400000
	if rem < 0 {
		days, rem = days-1, rem+86400000
	}
	z := days + 719468
	era := z / 146097
	if z < 0 {
		era = (z - 146096) / 146097
	}
	doe := z - era*146097                                  // [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // [0, 399]
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // [0, 365]
	mp := (5*doy + 2) / 153                                // [0, 11], from March
	t := civilTime{
		year:  int(yoe + era*400),
		day:   int(doy - (153*mp+2)/5 + 1),
		month: int(mp + 3),
		hour:  int(rem / 3600000),
		min:   int(rem / 60000 % 60),
		sec:   int(rem / 1000 % 60),
		milli: int(rem % 1000),
	}
	if t.month > 12 {
		t.month -= 12
		t.year++
	}
	return t, true
}

func append2(dst []byte, n int) []byte { return append(dst, byte('0'+n/10), byte('0'+n%10)) }

func append4(dst []byte, n int) []byte {
	return append(dst, byte('0'+n/1000), byte('0'+n/100%10), byte('0'+n/10%10), byte('0'+n%10))
}

// headerSpecial and extSpecial mark the bytes a CEF header value (\ and |)
// or extension value (\ and =) escapes, and CR and LF, which neither may
// hold raw.
var headerSpecial, extSpecial = specials(`\|`), specials(`\=`)

func specials(chars string) (t [256]bool) {
	for _, c := range []byte(chars + "\r\n") {
		t[c] = true
	}
	return t
}

// appendEscaped appends s, escaping the bytes special marks: runs of plain
// bytes, the common case, are copied whole. sep is the separator the
// field escapes besides \, CR and LF ('|' in the header, '=' in the
// extension): with it, eight bytes at a time are passed over while none of
// them is special.
func appendEscaped(dst []byte, s string, special *[256]bool, sep byte) []byte {
	start, i := 0, 0
	for {
		for ; i+8 <= len(s); i += 8 {
			w := swar.Load(s, i)
			if swar.Equal(w, '\\')|swar.Equal(w, sep)|swar.Equal(w, '\r')|swar.Equal(w, '\n') != 0 {
				break
			}
		}
		for i < len(s) && !special[s[i]] {
			i++
		}
		if i >= len(s) {
			return append(dst, s[start:]...)
		}
		c := s[i]
		dst = append(dst, s[start:i]...)
		switch c {
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\n':
			dst = append(dst, '\\', 'n')
		default:
			dst = append(dst, '\\', c)
		}
		i++
		start = i
	}
}

// appendHeaderValue escapes a CEF header field: \ and | get a backslash;
// CR and LF, which the header must not hold, become \r and \n.
func appendHeaderValue(dst []byte, s string) []byte {
	return appendEscaped(dst, s, &headerSpecial, '|')
}

// appendExtValue escapes a CEF extension value: \ and = get a backslash,
// CR and LF become \r and \n.
func appendExtValue(dst []byte, s string) []byte { return appendEscaped(dst, s, &extSpecial, '=') }

func timeUTC(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
