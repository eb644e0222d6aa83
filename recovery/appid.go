package recovery

import "strconv"

// appIDSymbol is the name the MCAS SIEM agent writes in cs2
// (uniqueServiceAppIds) for an app that has a symbolic one; "" for the
// others, which the agent writes as APPID_<appId>. Only names whose app id
// public evidence gives are here (docs/delivery.md cites it): the agent
// also writes APPID_O365_PORTAL ("Microsoft Office 365 admin center"), but
// no public source gives that app's id, so it comes out as APPID_<appId>.
func appIDSymbol(appID int64) string {
	switch appID {
	case 11161: // Office 365
		return "APPID_O365"
	case 20893: // Microsoft Exchange Online
		return "APPID_OUTLOOK"
	case 11114:
		return "APPID_SALESFORCE"
	case 10489:
		return "APPID_BOX"
	case 14509:
		return "APPID_SERVICENOW"
	}
	return ""
}

// maxAppIDText bounds the length of appendAppID's text: "APPID_" and a
// symbol or the digits of an int64.
const maxAppIDText = len("APPID_") + 20

// appendAppID appends the cs2 value of an activity whose appId is appID.
func appendAppID(dst []byte, appID int64) []byte {
	if s := appIDSymbol(appID); s != "" {
		return append(dst, s...)
	}
	return strconv.AppendInt(append(dst, "APPID_"...), appID, 10)
}

// AppIDText is what the MCAS SIEM agent writes in cs2
// (uniqueServiceAppIds) for the app appID: APPID_<name> for an app with a
// symbolic name (APPID_O365), else APPID_<appID>. A source whose records
// carry the app id under another name (the Graph source's ApplicationId)
// fills Activity.UniqueServiceAppIDs with it.
func AppIDText(appID int64) string { return string(appendAppID(make([]byte, 0, maxAppIDText), appID)) }
