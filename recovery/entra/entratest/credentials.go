package entratest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Certificate is a self-signed client certificate with its key, as an
// operator makes one for an application.
type Certificate struct {
	Cert *x509.Certificate // the public part, for App.Certificate
	// PEM is the file AZURE_CLIENT_CERTIFICATE_PATH names: the
	// certificate and its PKCS#8 private key.
	PEM []byte
}

// NewCertificate makes a certificate valid from notBefore to notAfter.
func NewCertificate(tb testing.TB, cn string, notBefore, notAfter time.Time) Certificate {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("entratest: certificate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("entratest: certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})...)
	return Certificate{Cert: cert, PEM: out}
}

// ServiceAccountIssuer stands for a Kubernetes cluster's OIDC issuer: it
// signs service account tokens, which the kubelet writes to the file
// AZURE_FEDERATED_TOKEN_FILE names.
type ServiceAccountIssuer struct {
	URL string
	key *rsa.PrivateKey
}

// NewServiceAccountIssuer makes an issuer with its own key.
func NewServiceAccountIssuer(tb testing.TB, url string) *ServiceAccountIssuer {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("entratest: issuer key: %v", err)
	}
	return &ServiceAccountIssuer{URL: url, key: key}
}

// Credential is the federated credential an application registers for
// the service account subject ("system:serviceaccount:NS:NAME").
func (i *ServiceAccountIssuer) Credential(subject string) *Federated {
	return &Federated{Issuer: i.URL, Subject: subject, Key: &i.key.PublicKey}
}

// Token is a projected service account token for subject, for Entra ID's
// token exchange, valid for lifetime.
func (i *ServiceAccountIssuer) Token(tb testing.TB, subject string, lifetime time.Duration) string {
	tb.Helper()
	now := time.Now()
	t, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": i.URL, "sub": subject, "aud": []string{"api://AzureADTokenExchange"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(lifetime).Unix(),
	}).SignedString(i.key)
	if err != nil {
		tb.Fatalf("entratest: service account token: %v", err)
	}
	return t
}
