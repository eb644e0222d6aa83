package mcas_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"siem-recovery/recovery"
	"siem-recovery/recovery/mcas"
	"siem-recovery/recovery/mcas/mcastest"
)

func TestThroughTinyproxy(t *testing.T) {
	t.Parallel()
	proxy := mcastest.StartTinyproxy(t)
	acts, want := generate(1500, 100, 450)
	for _, tc := range []struct {
		name  string
		tls   bool
		proxy string
	}{
		{"http", false, proxy.URL()},
		{"https-connect", true, proxy.Addr}, // host:port, no scheme
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := mcastest.New(t, mcastest.Options{Activities: acts, TLS: tc.tls})
			src, _ := newSource(t, srv, func(c *mcas.Config) { c.Proxy, c.PageSize = tc.proxy, 500 })
			d, err := drain(ctxFor(t, 30*time.Second), t, src, recovery.Cursor{}, 0)
			if err != nil {
				t.Fatalf("Fetch through tinyproxy: %v\ntinyproxy log:\n%s", err, proxy.Log())
			}
			assertExactlyOnce(t, d.ids, want)
			host := strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://")
			if tc.tls {
				// The tunnel: tinyproxy saw CONNECT to the emulator, and
				// the requests inside it are end to end.
				proxy.WaitLog(t, "CONNECT "+host, 5*time.Second)
			} else {
				proxy.WaitLog(t, "POST http://"+host+"/api/v1/activities/", 5*time.Second)
				for i, r := range srv.Requests() {
					if !strings.Contains(r.Via, "tinyproxy") {
						t.Fatalf("request %d reached the API without tinyproxy's Via header (Via %q)", i, r.Via)
					}
				}
			}
		})
	}
}

func TestDeadProxyIsInvalidProxy(t *testing.T) {
	acts, _ := generate(10, 0, 0)
	srv := mcastest.New(t, mcastest.Options{Activities: acts})
	dead := mcastest.DeadAddr(t)
	_, port, _ := net.SplitHostPort(dead)
	src, logs := newSource(t, srv, func(c *mcas.Config) { c.Proxy = "http://" + dead })
	start := time.Now()
	_, err := src.Fetch(ctxFor(t, 10*time.Second), recovery.Cursor{})
	if !errors.Is(err, recovery.ErrInvalidProxy) {
		t.Fatalf("error %v, want ErrInvalidProxy", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "127.0.0.1") || !strings.Contains(msg, "port "+port) || !strings.Contains(msg, "check you entered the right proxy and port") {
		t.Errorf("message %q does not name the address, the port and the remedy", msg)
	}
	if srv.Stats().Requests != 0 {
		t.Error("a request reached the API")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v: a dead proxy is not retried", took)
	}
	assertNoSecret(t, srv.Token(), msg, logs.String())

	if err := src.Probe(ctxFor(t, 10*time.Second)); !errors.Is(err, recovery.ErrInvalidProxy) {
		t.Errorf("Probe through a dead proxy: %v", err)
	}
}

func TestProxyAddresses(t *testing.T) {
	base := mcas.Config{BaseURL: "https://contoso.us2.portal.cloudappsecurity.com", Token: recovery.NewToken(mcastest.DefaultToken), Window: testWindow}
	for _, ok := range []string{"", "http://proxy.corp:3128", "proxy.corp:3128", "127.0.0.1:8080", "https://proxy.corp:443", "http://user:pass@proxy.corp:3128", "[::1]:3128"} {
		cfg := base
		cfg.Proxy = ok
		if _, err := mcas.New(cfg); err != nil {
			t.Errorf("proxy %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"proxy.corp", "http://proxy.corp", "socks5://proxy.corp:1080", "http://:3128", "proxy.corp:99999", "proxy.corp:http", "http://proxy.corp:3128/path", "http://user:hunter2@proxy.corp", "ht tp://x:1"} {
		cfg := base
		cfg.Proxy = bad
		_, err := mcas.New(cfg)
		if !errors.Is(err, recovery.ErrInvalidProxy) {
			t.Errorf("proxy %q: error %v, want ErrInvalidProxy", bad, err)
			continue
		}
		if !strings.Contains(err.Error(), "check you entered the right proxy and port") {
			t.Errorf("proxy %q: %q has no remedy", bad, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("proxy %q: the password shows in %q", bad, err)
		}
	}
}

func TestSourceURLs(t *testing.T) {
	token := recovery.NewToken(mcastest.DefaultToken)
	for in, want := range map[string]string{
		"https://contoso.us2.portal.cloudappsecurity.com":                    "https://contoso.us2.portal.cloudappsecurity.com/api/v1/activities/",
		"https://contoso.us2.portal.cloudappsecurity.com/":                   "https://contoso.us2.portal.cloudappsecurity.com/api/v1/activities/",
		"https://contoso.us2.portal.cloudappsecurity.com/api":                "https://contoso.us2.portal.cloudappsecurity.com/api/v1/activities/",
		"https://contoso.us2.portal.cloudappsecurity.com/api/v1/activities/": "https://contoso.us2.portal.cloudappsecurity.com/api/v1/activities/",
		"https://mcas.example.org:8443":                                      "https://mcas.example.org:8443/api/v1/activities/",
		"http://127.0.0.1:8080":                                              "http://127.0.0.1:8080/api/v1/activities/",
		"http://localhost:8080":                                              "http://localhost:8080/api/v1/activities/",
		"http://[::1]:8080":                                                  "http://[::1]:8080/api/v1/activities/",
	} {
		src, err := mcas.New(mcas.Config{BaseURL: in, Token: token, Window: testWindow})
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := src.Endpoint(); got != want {
			t.Errorf("%s: endpoint %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"", "contoso.us2.portal.cloudappsecurity.com", "http://contoso.us2.portal.cloudappsecurity.com", "http://10.1.2.3:80", "ftp://x.example", "https://user:pw@contoso.example", "https://contoso.example/?q=1", "https://",
		"https://contoso.example/?token=SECRETQ", "https://contoso.example/#SECRETF", "https://SECRETU@contoso.example", "ftp://SECRETU@x.example/?SECRETQ", "http://10.1.2.3/?token=SECRETQ"} {
		_, err := mcas.New(mcas.Config{BaseURL: bad, Token: token, Window: testWindow})
		if !errors.Is(err, recovery.ErrUsage) {
			t.Errorf("%q: error %v, want a usage error", bad, err)
		}
		if err != nil && (strings.Contains(err.Error(), "pw@") || strings.Contains(err.Error(), "SECRET")) {
			t.Errorf("%q: a secret shows in %q", bad, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://contoso.example":                  "https://contoso.example",
		"https://contoso.example/api?token=abc":    "https://contoso.example/api?xxxxx",
		"https://contoso.example/#abc":             "https://contoso.example/#xxxxx",
		"https://user:pw@contoso.example/a@b":      "https://xxxxx@contoso.example/a@b",
		"https://tok@contoso.example":              "https://xxxxx@contoso.example",
		"user:hunter2@proxy.corp:3128":             "xxxxx@proxy.corp:3128",
		"http://proxy.corp:3128":                   "http://proxy.corp:3128",
		"ht tp://u:p@x:1/?q":                       "ht tp://xxxxx@x:1/?xxxxx",
		"https://contoso.example/path?x=1@evil.io": "https://contoso.example/path?xxxxx",
	} {
		if got := recovery.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
