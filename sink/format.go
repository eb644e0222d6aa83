package sink

import (
	"bytes"
	"strconv"
	"strings"
	"time"

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
	dst = append(dst, "CEF:0|MCAS|SIEM_Agent|"...)
	dst = appendHeaderValue(dst, f.Version)
	dst = append(dst, '|')
	sig := a.EventTypeName
	if sig == "" {
		sig = a.EventTypeValue
	}
	dst = appendHeaderValue(dst, sig)
	dst = append(dst, '|')
	dst = appendHeaderValue(dst, a.Description)
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
	dst = f.appendPortalLink(dst, a.ID)
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
// MCAS agent stamps its lines: 2017-11-22T17:50:04.000Z, in UTC.
func AppendTime(dst []byte, ms int64) []byte {
	return timeUTC(ms).AppendFormat(dst, isoMillis)
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
// bytes, the common case, are copied whole.
func appendEscaped(dst []byte, s string, special *[256]bool) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !special[c] {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\n':
			dst = append(dst, '\\', 'n')
		default:
			dst = append(dst, '\\', c)
		}
		start = i + 1
	}
	return append(dst, s[start:]...)
}

// appendHeaderValue escapes a CEF header field: \ and | get a backslash;
// CR and LF, which the header must not hold, become \r and \n.
func appendHeaderValue(dst []byte, s string) []byte { return appendEscaped(dst, s, &headerSpecial) }

// appendExtValue escapes a CEF extension value: \ and = get a backslash,
// CR and LF become \r and \n.
func appendExtValue(dst []byte, s string) []byte { return appendEscaped(dst, s, &extSpecial) }

func timeUTC(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
