// Command make-example writes docs/examples/activities.jsonl, the export the
// README's first command recovers: 112 activities in the shape the MCAS
// activities API returns them (internal/activitygen) around the window of
// docs/examples/alert.json (2024-05-14T08:00:00Z to 09:00:00Z), 102 of them
// inside it, with the window's edges, bursts of activities sharing one
// millisecond, CEF special characters, non-ASCII text and IPv6 clients.
// Deterministic: the same file on every run. Run it from the repository's
// root: go run ./scripts/make-example
package main

import (
	"bytes"
	"log"
	"os"
	"slices"

	"siem-recovery/internal/activitygen"
)

const (
	start = 1715673600000 // 2024-05-14T08:00:00Z
	end   = start + 3600_000
	path  = "docs/examples/activities.jsonl"
	// alertsPath is the alerts of the same window, in the shape the alerts
	// API lists them: --data alerts recovers them.
	alertsPath = "docs/examples/alerts.jsonl"
)

var (
	apps = []activitygen.App{
		{ID: 11161, Name: "Office 365"}, {ID: 20893, Name: "Microsoft Exchange Online"}, {ID: 14509, Name: "ServiceNow"},
		{ID: 11114, Name: "Salesforce"}, {ID: 10489, Name: "Box"}, {ID: 11599, Name: "Amazon Web Services"},
	}
	events = []activitygen.Event{
		{Name: "EVENT_CATEGORY_LOGIN", Value: "EVENT_O365_LOGIN", Description: "Log on", Operation: "UserLoggedIn", Target: activitygen.TargetAccount},
		{Name: "EVENT_CATEGORY_LOGOUT", Value: "EVENT_O365_LOGOUT", Description: "Log out", Operation: "UserLoggedOut", Target: activitygen.TargetAccount},
		{Name: "EVENT_CATEGORY_DOWNLOAD_FILE", Value: "EVENT_BOX_DOWNLOAD", Description: "Download file: Q2 budget|draft=v3.xlsx",
			Operation: "DOWNLOAD", Target: activitygen.TargetObject, Object: "Q2 budget|draft=v3.xlsx"},
		{Name: "EVENT_CATEGORY_UPLOAD_FILE", Value: "EVENT_BOX_UPLOAD", Description: `Upload file: C:\Users\adele\Données\rapport_été.docx`,
			Operation: "UPLOAD", Target: activitygen.TargetObject, Object: `C:\Users\adele\Données\rapport_été.docx`},
		{Name: "EVENT_CATEGORY_CHANGE_PASSWORD", Value: "EVENT_SN_PASSWORD", Description: "Change password", Operation: "password.change", Target: activitygen.TargetAccount},
		{Name: "EVENT_CATEGORY_RUN_COMMAND", Value: "EVENT_AWS_RUN", Description: "Run command: aws s3 ls --query 'Buckets[?Name==`logs`]'", Operation: "ListBuckets"},
		{Name: "EVENT_CATEGORY_SEND_MAIL", Value: "EVENT_EXO_SEND", Description: "Send mail: \"Réunion 会议\" to 3 recipients", Operation: "Send"},
		{Name: "EVENT_CATEGORY_UNSPECIFIED", Value: "EVENT_SF_REPORT", Description: "Export report\nline two of a multi-line description\r\nthird line",
			Operation: "ReportExport", Target: activitygen.TargetObject, Object: "Pipeline = Q2 (EMEA)"},
		{Name: "EVENT_CATEGORY_UPDATE_PERMISSIONS", Value: "EVENT_O365_SHARING_SET", Description: "Share folder Finance with external user",
			Operation: "SharingSet", Target: activitygen.TargetShare, Object: "Finance"},
		{Name: "EVENT_CATEGORY_FAILED_LOGIN", Value: "EVENT_AAD_LOGIN_FAILED", Description: "Failed log on (Failure message: Invalid username or password.)",
			Operation: "OAuth2:Token", Target: activitygen.TargetParameters},
	}
	users = []struct{ name, display string }{
		{"admin@contoso.com", "MOD Administrator"}, {"megan.bowen@contoso.com", "Megan Bowen"}, {"adele.vance@contoso.com", "Adele Vance"},
		{"françois.dupré@contoso.com", "François Dupré"}, {"søren.kierkegaard@contoso.com", "Søren Kierkegaard"}, {"svc-backup@contoso.com", "Backup Service"},
	}
	ips    = []string{"13.82.149.151", "40.76.4.15", "185.199.108.153", "2001:db8:85a3::8a2e:370:7334", "10.20.30.40"}
	agents = []string{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
		"Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17531; Pro)", "aws-cli/2.15.40 Python/3.11.8", ""}
	countries = []string{"US", "FR", "DK", "JP", ""}
)

// timestamps are the example's activity times: 4 before the window and 4
// after it, its edges on both sides, and 80 inside it, every 20th shared by
// 5 more (a burst in one millisecond); 102 in the window.
func timestamps() []int64 {
	ts := []int64{start - 1, end, start, end - 1}
	for k := range 4 {
		ts = append(ts, start-1-int64(activitygen.Hash(k, 1)%3600_000), end+int64(activitygen.Hash(k, 2)%3600_000))
	}
	for k := range 80 {
		// Evenly spread, each moved by up to ±20 s: still ascending, inside.
		t := start + 20_000 + int64(k)*44_500 + int64(activitygen.Hash(k, 3)%40_000) - 20_000
		ts = append(ts, t)
		if k%20 == 0 {
			ts = append(ts, t, t, t, t, t)
		}
	}
	slices.Sort(ts)
	return ts
}

// exampleExport is the content of docs/examples/activities.jsonl.
func exampleExport() []byte {
	var out []byte
	for i, ts := range timestamps() {
		a := activitygen.New(i, ts)
		a.App = apps[activitygen.Hash(i, 4)%uint64(len(apps))]
		a.Event = events[activitygen.Hash(i, 5)%uint64(len(events))]
		u := users[activitygen.Hash(i, 6)%uint64(len(users))]
		a.User, a.DisplayName = u.name, u.display
		a.IP = ips[activitygen.Hash(i, 7)%uint64(len(ips))]
		a.UserAgent = agents[activitygen.Hash(i, 8)%uint64(len(agents))]
		a.Country = countries[activitygen.Hash(i, 9)%uint64(len(countries))]
		a.TenantForm = activitygen.Hash(i, 10)%2 == 0
		out = append(a.Append(out), '\n')
	}
	return out
}

// exampleAlerts is the content of docs/examples/alerts.jsonl: 14 alerts,
// 12 inside the window, one of each kind of policy in turn, two sharing a
// millisecond.
func exampleAlerts() []byte {
	ts := []int64{start - 60_000, end + 1}
	for k := range 12 {
		ts = append(ts, start+int64(k)*290_000+int64(activitygen.Hash(k, 11)%200_000))
	}
	ts[len(ts)-1] = ts[len(ts)-2] // two in one millisecond
	slices.Sort(ts)
	var out []byte
	for i, t := range ts {
		out = append(activitygen.AppendAlert(out, i, t), '\n')
	}
	return out
}

func main() {
	alerts := exampleAlerts()
	if err := os.WriteFile(alertsPath, alerts, 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("%s: %d alerts, 12 in the window", alertsPath, bytes.Count(alerts, []byte("\n")))
	data := exampleExport()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		log.Fatal(err)
	}
	inside := 0
	for _, ts := range timestamps() {
		if start <= ts && ts < end {
			inside++
		}
	}
	log.Printf("%s: %d activities, %d in the window", path, bytes.Count(data, []byte("\n")), inside)
}
