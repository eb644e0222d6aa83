package rsyslogtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ServerName is the DNS name in the server certificate, besides the IP
// address 127.0.0.1.
const ServerName = "rsyslog.test"

// PKI is a throw-away CA with a server and a client certificate, as PEM
// files in a test's temporary directory.
type PKI struct {
	CAFile                        string
	ServerCertFile, ServerKeyFile string // for 127.0.0.1 and ServerName
	ClientCertFile, ClientKeyFile string // signed by the same CA
}

// ServerNames are the names a server certificate carries: its subject's
// Common Name and its subjectAltName (DNS names, IP addresses).
type ServerNames struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
}

// NewPKI makes a CA and issues the certificates, the server's for
// ServerName and 127.0.0.1.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	return NewPKIFor(t, ServerNames{CommonName: ServerName, DNSNames: []string{ServerName}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
}

// NewPKIFor is NewPKI with a server certificate that carries names: one
// with no subjectAltName, say, as a CN-only openssl line makes.
func NewPKIFor(t testing.TB, names ServerNames) *PKI {
	t.Helper()
	dir := t.TempDir()
	p := &PKI{
		CAFile:         filepath.Join(dir, "ca.pem"),
		ServerCertFile: filepath.Join(dir, "server.pem"),
		ServerKeyFile:  filepath.Join(dir, "server-key.pem"),
		ClientCertFile: filepath.Join(dir, "client.pem"),
		ClientKeyFile:  filepath.Join(dir, "client-key.pem"),
	}
	now := time.Now()
	caKey := newKey(t)
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "rsyslogtest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err = x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.CAFile, "CERTIFICATE", caDER)
	issue := func(serial int64, names ServerNames, usage x509.ExtKeyUsage, certFile, keyFile string) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: names.CommonName},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     names.DNSNames,
			IPAddresses:  names.IPs,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, certFile, "CERTIFICATE", der)
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	}
	issue(2, names, x509.ExtKeyUsageServerAuth, p.ServerCertFile, p.ServerKeyFile)
	client := "siem-recovery.test"
	issue(3, ServerNames{CommonName: client, DNSNames: []string{client}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, x509.ExtKeyUsageClientAuth, p.ClientCertFile, p.ClientKeyFile)
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
