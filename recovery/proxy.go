package recovery

import (
	"net/url"
	"strconv"
	"strings"
)

// RemedyProxy is the fix of a proxy that does not parse or does not
// answer: the "Solution" of the SIEM agent's "Invalid proxy error".
const RemedyProxy = "check you entered the right proxy and port"

// ParseProxy reads --proxy, the HTTP(S) proxy of an API source:
// http://host:port, https://host:port or host:port (taken as http). ""
// means no --proxy (nil). Its errors are ErrInvalidProxy, with the URL
// shown through RedactURL.
func ParseProxy(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, nil
	}
	shown := RedactURL(raw)
	s := raw
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, Problemf(ErrInvalidProxy, RemedyProxy, "the proxy %q is not an address: want http://host:port or host:port", shown)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, Problemf(ErrInvalidProxy, RemedyProxy, "the proxy %q: scheme %q is not supported: want http://host:port or host:port", shown, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, Problemf(ErrInvalidProxy, RemedyProxy, "the proxy %q has no host: want http://host:port or host:port", shown)
	}
	port := u.Port()
	if port == "" {
		return nil, Problemf(ErrInvalidProxy, RemedyProxy, "the proxy %q has no port: want http://host:port or host:port", shown)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, Problemf(ErrInvalidProxy, RemedyProxy, "the proxy %q: port %q is not 1 to 65535", shown, port)
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, Problemf(ErrInvalidProxy, RemedyProxy, "the proxy %q has a path or query: want http://host:port or host:port", shown)
	}
	return u, nil
}
