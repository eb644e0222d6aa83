package mcas

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"siem-recovery/recovery"
)

// Remedies printed after the problem (SPEC §3, the "Solution" column of
// the SIEM agent's troubleshooting table).
const (
	remedySource = "give the tenant's API URL, https://TENANT.REGION.portal.cloudappsecurity.com"
	remedyToken  = "check you copied the right token, or generate a new one"
	remedyNoTok  = "give the API token with --token-file, the MCAS_TOKEN environment variable or --token"
	remedyProxy  = recovery.RemedyProxy
	remedyFilter = "check the --filter file uses fields and operators the activities API accepts"
	remedyPaging = "use --page-size 500 to 5000 (scan mode), or 1 to 100 (plain paging)"
	remedyRetry  = "run again later: the recovery resumes where it stopped; if it keeps failing, contact support"
	// remedyInternal follows an answer the API should never give.
	remedyInternal = "re-run the same command: the recovery resumes where it stopped; if the API answers so again, contact support with this message"
	remedyScan     = "use scan mode (--page-size 500 or more)"
	// remedyAnswerSize follows an answer larger than MaxAnswer: its size
	// grows with the page's.
	remedyAnswerSize  = "give a smaller --page-size (500 at least in scan mode): an answer's size grows with it; if the API answers so even then, contact support with this message"
	remedyUnreachable = "check the host and port: the tenant's API URL is https://TENANT.REGION.portal.cloudappsecurity.com"
	// remedyScheme follows a TLS handshake answered in plain text, or a
	// plain request answered by a TLS port.
	remedyScheme = "check the scheme and the port: the tenant's API URL is https://TENANT.REGION.portal.cloudappsecurity.com, on port 443"
)

// endpointPath is the activities endpoint under the tenant's URL. The
// trailing slash matters: without it the API ignores the request body.
const endpointPath = "/api/v1/activities/"

// ParseSource checks an API --source URL and returns the activities
// endpoint. Any https host is accepted (tenants live under several
// domains); plain http only to a loopback address, for tests. A path the
// operator copied from the portal ("/api", "/api/v1", "/api/v1/activities")
// is tolerated. Its errors show the URL through RedactURL: a token pasted
// into it never reaches a message.
func ParseSource(raw string) (*url.URL, error) {
	shown := recovery.RedactURL(strings.TrimSpace(raw))
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" || u.Opaque != "" {
		return nil, recovery.Problemf(recovery.ErrUsage, remedySource, "--source %q is not an https:// URL", shown)
	}
	if u.User != nil {
		return nil, recovery.Problemf(recovery.ErrUsage, remedySource+"; the token goes in --token-file, MCAS_TOKEN or --token", "--source %s carries a user name or password", shown)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, recovery.Problemf(recovery.ErrUsage, remedySource, "--source %s has a query or fragment", shown)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, recovery.Problemf(recovery.ErrUsage, "use https:// (plain http is for a loopback test server only)",
				"--source %s would send the token in clear text", shown)
		}
	default:
		return nil, recovery.Problemf(recovery.ErrUsage, remedySource, "--source %s: scheme %q is neither https, file nor graph", shown, u.Scheme)
	}
	path := strings.TrimRight(u.Path, "/")
	for _, suffix := range []string{"/api/v1/activities", "/api/v1/alerts", "/api/v1", "/api"} {
		if strings.HasSuffix(path, suffix) {
			path = strings.TrimSuffix(path, suffix)
			break
		}
	}
	u.Path, u.RawPath = path+endpointPath, ""
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// legacyToken is the shape of an MCAS API token.
var legacyToken = regexp.MustCompile(`^[0-9A-Za-z\-_=.+]{64,}$`)

// authorization returns the Authorization scheme for the token: "Bearer"
// for a JWT (an Entra ID application token), "Token" for a legacy MCAS API
// token. Any other shape is refused before a request is made; the
// message describes the token without showing any of it.
func authorization(t recovery.Token) (string, error) {
	secret := t.Reveal()
	switch {
	case secret == "":
		return "", recovery.Problemf(recovery.ErrInvalidToken, remedyNoTok, "no API token was given")
	case isJWT(secret):
		return "Bearer", nil
	case legacyToken.MatchString(secret):
		return "Token", nil
	}
	var why string
	switch {
	case strings.ContainsAny(secret, " \t\r\n"):
		why = "it contains white space"
	case len(secret) < 64:
		why = fmt.Sprintf("it has %d characters", len(secret))
	default:
		why = "it contains other characters"
	}
	return "", recovery.Problemf(recovery.ErrInvalidToken, remedyToken,
		"the token is neither an MCAS API token (64 or more of 0-9 A-Z a-z - _ = . +) nor a JWT: %s", why)
}

// isJWT reports whether s is three base64url parts whose first (the
// header) decodes to a JSON object.
func isJWT(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	head, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[0], "="))
	if err != nil {
		return false
	}
	var obj map[string]json.RawMessage
	return json.Unmarshal(head, &obj) == nil
}
