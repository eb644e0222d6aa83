package sink

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"siem-recovery/recovery"
)

func TestOpenRefusesBadTargetsAndOptions(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, target string
		opts         Options
		wantInErr    string
	}{
		{"unknown scheme", "http://127.0.0.1:514", Options{}, `--sink "http://127.0.0.1:514": not a sink address`},
		{"bare word", "syslog", Options{}, `--sink "syslog": not a sink address`},
		{"no port", "tcp://127.0.0.1", Options{}, "needs a host and a port"},
		{"port zero", "udp://127.0.0.1:0", Options{}, "needs a host and a port"},
		{"port too big", "tls://host:70000", Options{}, "needs a host and a port"},
		{"path", "tcp://127.0.0.1:514/x", Options{}, "expected tcp://HOST:PORT"},
		{"empty file", "file:", Options{}, "no file path"},
		{"file in missing dir", "file:" + filepath.Join(dir, "no", "such", "out.log"), Options{}, "cannot open the file"},
		{"format", "stdout", Options{Format: "xml"}, `--format "xml"`},
		{"syslog", "tcp://127.0.0.1:514", Options{Syslog: "rfc9999"}, `--syslog "rfc9999"`},
		{"framing", "tcp://127.0.0.1:514", Options{Framing: "crlf"}, `--framing "crlf"`},
		{"octet on udp", "udp://127.0.0.1:514", Options{Framing: FramingOctet}, "--framing octet applies to tcp:// and tls://"},
		{"octet on relp", "relp://127.0.0.1:514", Options{Framing: FramingOctet}, "--framing octet applies to tcp:// and tls://"},
		{"relp path", "relp://127.0.0.1:514/x", Options{}, "expected relp://HOST:PORT"},
		{"ca on relp", "relp://127.0.0.1:514", Options{CAFile: missing}, `--ca-file is set but --sink "relp://127.0.0.1:514" is not tls:// or relp+tls://`},
		{"octet on relp+tls", "relp+tls://127.0.0.1:514", Options{Framing: FramingOctet}, "--framing octet applies to tcp:// and tls://"},
		{"missing ca on relp+tls", "relp+tls://127.0.0.1:514", Options{CAFile: missing}, "--ca-file " + missing},
		{"relp+tls path", "relp+tls://127.0.0.1:514/x", Options{}, "expected relp+tls://HOST:PORT"},
		{"octet on file", "file:" + filepath.Join(dir, "o.log"), Options{Framing: FramingOctet}, "--framing octet"},
		{"udp size", "udp://127.0.0.1:514", Options{MaxDatagram: 100}, "UDP message size 100"},
		{"ca on tcp", "tcp://127.0.0.1:514", Options{CAFile: missing}, "--ca-file is set but"},
		{"missing ca", "tls://127.0.0.1:514", Options{CAFile: missing}, "--ca-file " + missing},
		{"ca not pem", "tls://127.0.0.1:514", Options{CAFile: notPEM}, "no PEM certificate"},
		{"cert without key", "tls://127.0.0.1:514", Options{CertFile: notPEM}, "needs both --tls-cert and --tls-key"},
		{"bad key pair", "tls://127.0.0.1:514", Options{CertFile: missing, KeyFile: notPEM}, "--tls-cert " + missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(context.Background(), tt.target, tt.opts)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded", tt.target)
			}
			if !errors.Is(err, recovery.ErrUsage) {
				t.Errorf("error %v is not a usage error", err)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not say %q", err, tt.wantInErr)
			}
		})
	}
}

func testActivities(t testing.TB) []recovery.Activity {
	t.Helper()
	var as []recovery.Activity
	for _, raw := range []string{referenceJSON, specialJSON, ipv6JSON, minimalJSON, nonASCIIJSON} {
		as = append(as, parse(t, raw))
	}
	return as
}

func TestFileSinkAppendsSyncedLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.cef")
	opts := Options{Version: "1.2.3", PortalURL: "https://contoso.portal.cloudappsecurity.com"}
	as := testActivities(t)
	for i, target := range []string{"file:" + path, "file://" + path} {
		s, err := Open(context.Background(), target, opts)
		if err != nil {
			t.Fatal(err)
		}
		resent, err := s.Send(context.Background(), recovery.Batch{Activities: as[i*2 : i*2+2]})
		if err != nil || resent != 0 {
			t.Fatalf("Send: resent %d, %v", resent, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	enc := encoder{format: Formatter{Version: "1.2.3", PortalURL: "https://contoso.portal.cloudappsecurity.com"}, syslog: SyslogNone, framing: FramingLF}
	var want []byte
	for _, a := range as[:4] {
		want = enc.appendFrame(want, a)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("file holds\n%s\nwant\n%s", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		t.Errorf("file mode %v, want no access for group and others", mode)
	}
}

func TestStdoutSinkWritesJSONLines(t *testing.T) {
	var out bytes.Buffer
	for _, target := range []string{"stdout", "-", ""} {
		out.Reset()
		s, err := Open(context.Background(), target, Options{Format: FormatJSON, Stdout: &out})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Send(context.Background(), recovery.Batch{Activities: []recovery.Activity{parse(t, jsonMultiLine), parse(t, jsonOneLine)}}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		want := `{  "_id": "id-j2",  "timestamp": 1700000000000}` + "\n" + jsonOneLine + "\n"
		if out.String() != want {
			t.Errorf("%q: got %q, want %q", target, out.String(), want)
		}
	}
}

func TestSendAfterCancelDoesNotWrite(t *testing.T) {
	var out bytes.Buffer
	s, err := Open(context.Background(), "-", Options{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Send(ctx, recovery.Batch{Activities: testActivities(t)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Send on a cancelled ctx: %v, want context.Canceled", err)
	}
	if out.Len() != 0 {
		t.Errorf("wrote %q", out.String())
	}
}
