package entra

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
)

// The remedies name the resource's own permission, API and product, so
// that a Graph source's refusal does not send the operator to the MCAS
// permission.
func TestRemediesNameTheResource(t *testing.T) {
	id, err := FromEnv(func(k string) string {
		return map[string]string{"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s3cret"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	graph := Resource{Scope: "https://graph.microsoft.com/.default", API: "Microsoft Graph", Permission: "ThreatHunting.Read.All", Product: "Microsoft Defender XDR"}
	r := recovery.NewRedactor()
	tok := NewToken(id, graph, http.DefaultClient, time.Second, nil, r)
	if got := tok.RefusedRemedy(http.StatusForbidden); !strings.Contains(got, `ThreatHunting.Read.All of "Microsoft Graph"`) {
		t.Errorf("403 remedy: %s", got)
	}
	if _, remedy := tok.aadsts(65001); !strings.Contains(remedy, `ThreatHunting.Read.All of "Microsoft Graph"`) {
		t.Errorf("AADSTS65001 remedy: %s", remedy)
	}
	if meaning, remedy := tok.aadsts(500011); !strings.Contains(meaning, "Microsoft Graph") || !strings.Contains(remedy, "Microsoft Defender XDR") {
		t.Errorf("AADSTS500011: %s; %s", meaning, remedy)
	}
	if got := r.Redact("secret s3cret here"); strings.Contains(got, "s3cret") {
		t.Errorf("the client secret is not redacted: %s", got)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"": 0, "7": 7 * time.Second, "-3": 0, "soon": 0, "99999": 15 * time.Minute,
		"Mon, 07 Dec 2026 12:00:30 GMT": 30 * time.Second,
	} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("retryAfter(%q) = %s, want %s", h, got, want)
		}
	}
}
