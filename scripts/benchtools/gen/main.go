// Command gen writes N realistic MCAS activities as JSON lines, all inside
// the window [-start, -start+1h), a few hundred sharing each millisecond.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
)

func main() {
	n := flag.Int("n", 1_000_000, "activities to write")
	start := flag.Int64("start", 1715673600000, "window start, epoch ms")
	out := flag.String("o", "-", "output file (- for stdout)")
	flag.Parse()
	w := os.Stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	apps := []struct {
		id         int
		name, uniq string
	}{{11161, "Microsoft 365", "APPID_OFFICE365"}, {20893, "Microsoft Exchange Online", "APPID_EXCHANGE"},
		{14509, "ServiceNow", "APPID_SERVICENOW"}, {10489, "Box", "APPID_BOX"}}
	events := []struct{ name, value, desc string }{
		{"EVENT_CATEGORY_LOGIN", "EVENT_O365_LOGIN", "Log on"},
		{"EVENT_CATEGORY_DOWNLOAD_FILE", "EVENT_BOX_DOWNLOAD", "Download file: Q2 budget|draft=v3.xlsx"},
		{"EVENT_CATEGORY_SEND_MAIL", "EVENT_EXO_SEND", "Send mail: \"Réunion 会议\" to 3 recipients"},
		{"EVENT_CATEGORY_UNSPECIFIED", "EVENT_SF_REPORT", "Export report\nsecond line"},
	}
	ips := []string{"13.82.149.151", "40.76.4.15", "2001:db8:85a3::8a2e:370:7334"}
	for i := range *n {
		app, ev := apps[i%len(apps)], events[i%len(events)]
		ts := *start + int64(i)*3_599_000/int64(*n)
		user := fmt.Sprintf("user%d@contoso.com", i%997)
		act := map[string]any{
			"_id": fmt.Sprintf("%d_%08x-19a4-485b-ebd2-%012x", ts+1234, i, i), "timestamp": ts, "created": ts + 40000,
			"appId": app.id, "appName": app.name, "saasId": app.id, "eventType": 900000 + i%1000,
			"eventTypeName": ev.name, "eventTypeValue": ev.value, "description": ev.desc, "severity": "INFO",
			"user":                map[string]any{"userName": user, "userTags": []string{}, "userType": "USER"},
			"device":              map[string]any{"clientIP": ips[i%len(ips)], "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0", "countryCode": "US"},
			"location":            map[string]any{"countryCode": "US", "city": "Boydton", "organizationSearchable": "Microsoft Corporation"},
			"uniqueServiceAppIds": []string{app.uniq}, "targetObjects": []string{user, fmt.Sprintf("obj-%d", i)}, "policyIDs": []string{},
			"mainAsset": map[string]any{"displayName": user},
		}
		b, err := json.Marshal(act)
		if err != nil {
			log.Fatal(err)
		}
		bw.Write(b)
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		log.Fatal(err)
	}
}
