// Package entra obtains Microsoft Entra ID access tokens for the Microsoft
// APIs a source reads (the MCAS activities and alerts API, Microsoft
// Graph): an application's (client secret, client certificate, workload
// identity) or the machine's managed identity, read from the Azure SDK's
// environment, through azidentity. Tokens are renewed before they expire
// and when the API refuses one. The package makes no retry of its own: a
// failure is returned, typed (a *recovery.Error for a refusal no retry
// mends, a *NetworkError, a *RetryableError), for the source's one retry
// policy to count.
package entra

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"siem-recovery/recovery"
)

// PublicAuthority is Entra ID's authority host in the public cloud, the
// default when AZURE_AUTHORITY_HOST is not set.
const PublicAuthority = "https://login.microsoftonline.com/"

// Identity is an Entra ID identity the API accepts tokens of: an
// application (client secret, client certificate, or a federated token
// such as Kubernetes workload identity) or the machine's managed
// identity. Build it with FromEnv or ManagedFromEnv.
type Identity struct {
	// Kind says how it authenticates: "client secret", "client
	// certificate", "workload identity" or "managed identity".
	Kind string
	// TenantID and ClientID name the application; a system-assigned
	// managed identity has neither.
	TenantID, ClientID string
	// Authority is the Entra ID host tokens come from (AZURE_AUTHORITY_HOST);
	// "" for a managed identity, whose tokens come from the machine.
	Authority string

	managed bool
	hidden  []string // the client secret, the certificate's password, IDENTITY_HEADER
	// credential builds the SDK credential on the given transport.
	credential func(azcore.ClientOptions) (azcore.TokenCredential, error)
}

// String describes the identity for the doctor and the logs: no secret.
func (id *Identity) String() string {
	if id.managed {
		if id.ClientID == "" {
			return "managed identity (system-assigned)"
		}
		return "managed identity (user-assigned), client " + id.ClientID
	}
	return fmt.Sprintf("Entra ID application (%s), client %s, tenant %s, authority %s", id.Kind, id.ClientID, id.TenantID, id.Authority)
}

// The environment of the Azure SDK (azidentity) that configures an identity.
const (
	envTenant        = "AZURE_TENANT_ID"
	envClient        = "AZURE_CLIENT_ID"
	envSecret        = "AZURE_CLIENT_SECRET"
	envCertificate   = "AZURE_CLIENT_CERTIFICATE_PATH"
	envCertPassword  = "AZURE_CLIENT_CERTIFICATE_PASSWORD"
	envFederatedFile = "AZURE_FEDERATED_TOKEN_FILE"
	envAuthority     = "AZURE_AUTHORITY_HOST"
	envIdentityHdr   = "IDENTITY_HEADER"
)

const remedyEnv = "set AZURE_TENANT_ID, AZURE_CLIENT_ID and one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE (docs/runbook.md, \"Create the Entra application\")"

// FromEnv reads an Entra ID application from the Azure SDK's
// standard environment (getenv is os.Getenv outside tests): the tenant,
// the client id, and the first of a client secret, a certificate file or
// a federated token file. It reads the certificate, so that a bad one is
// reported before any request; it makes no request. Its errors are
// *recovery.Error: ErrInvalidToken for a missing or unreadable
// credential, ErrUsage for an AZURE_AUTHORITY_HOST that is no https URL.
func FromEnv(getenv func(string) string) (*Identity, error) {
	id := &Identity{TenantID: strings.TrimSpace(getenv(envTenant)), ClientID: strings.TrimSpace(getenv(envClient))}
	for _, v := range []struct{ name, value string }{{envTenant, id.TenantID}, {envClient, id.ClientID}} {
		if v.value == "" {
			return nil, recovery.Problemf(recovery.ErrInvalidToken, remedyEnv, "%s is not set", v.name)
		}
	}
	authority, err := authorityHost(getenv(envAuthority))
	if err != nil {
		return nil, err
	}
	id.Authority = authority
	// The SDK's order: a secret, then a certificate; a federated token
	// file is the workload identity of a Kubernetes pod.
	secret, certPath, federated := getenv(envSecret), getenv(envCertificate), getenv(envFederatedFile)
	switch {
	case secret != "":
		id.Kind, id.hidden = "client secret", []string{secret}
		id.credential = func(o azcore.ClientOptions) (azcore.TokenCredential, error) {
			return azidentity.NewClientSecretCredential(id.TenantID, id.ClientID, secret,
				&azidentity.ClientSecretCredentialOptions{ClientOptions: o, DisableInstanceDiscovery: true})
		}
	case certPath != "":
		password := getenv(envCertPassword)
		certs, key, err := readCertificate(certPath, password)
		if err != nil {
			return nil, err
		}
		id.Kind, id.hidden = "client certificate", []string{password}
		id.credential = func(o azcore.ClientOptions) (azcore.TokenCredential, error) {
			return azidentity.NewClientCertificateCredential(id.TenantID, id.ClientID, certs, key,
				&azidentity.ClientCertificateCredentialOptions{ClientOptions: o, DisableInstanceDiscovery: true})
		}
	case federated != "":
		// Read once to fail early; the SDK reads it again as the kubelet
		// rotates it.
		if _, err := os.ReadFile(federated); err != nil {
			return nil, recovery.Problemf(recovery.ErrInvalidToken, "check the pod's service account is annotated for workload identity (azure.workload.identity/use)",
				"%s %s cannot be read: %w", envFederatedFile, federated, err)
		}
		id.Kind = "workload identity"
		id.credential = func(o azcore.ClientOptions) (azcore.TokenCredential, error) {
			return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{ClientOptions: o,
				TenantID: id.TenantID, ClientID: id.ClientID, TokenFilePath: federated, DisableInstanceDiscovery: true})
		}
	default:
		return nil, recovery.Problemf(recovery.ErrInvalidToken, remedyEnv,
			"%s and %s are set, but none of %s, %s or %s", envTenant, envClient, envSecret, envCertificate, envFederatedFile)
	}
	return id, nil
}

// authorityHost checks AZURE_AUTHORITY_HOST ("" is the public cloud).
//
// Instance discovery is always off (DisableInstanceDiscovery above). MSAL
// asks login.microsoftonline.com to validate an authority only when the
// host is not in its list of Microsoft's clouds (public, US Government,
// China, the sovereign clouds): for those it goes straight to the host's
// OpenID configuration whatever the option says, so turning it off changes
// nothing there. For any other host (Azure Stack, a new sovereign cloud,
// the tests' emulator) discovery would send a request to the public cloud,
// which a disconnected network cannot reach and which the operator did not
// name. What is given up is Microsoft's word that the host is an Entra ID
// authority; the operator named it, its certificate is verified, and MSAL
// still checks that the OpenID configuration's issuer is that host.
func authorityHost(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return PublicAuthority, nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", recovery.Problemf(recovery.ErrUsage, "give the Entra ID host of the cloud, e.g. https://login.microsoftonline.us/",
			"%s %q is not an https:// host", envAuthority, recovery.RedactURL(raw))
	}
	return "https://" + u.Host + "/", nil
}

// readCertificate loads AZURE_CLIENT_CERTIFICATE_PATH as the SDK does (PEM
// or PKCS#12, with the key), and refuses a certificate past its end date:
// Entra ID would refuse every assertion it signs.
func readCertificate(path, password string) ([]*x509.Certificate, crypto.PrivateKey, error) {
	const remedy = "give a PEM or PKCS#12 file holding the certificate registered for the application and its private key (AZURE_CLIENT_CERTIFICATE_PASSWORD if it has one)"
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, recovery.Problemf(recovery.ErrInvalidToken, remedy, "%s %s cannot be read: %w", envCertificate, path, err)
	}
	var pass []byte
	if password != "" {
		pass = []byte(password)
	}
	certs, key, err := azidentity.ParseCertificates(data, pass)
	if err != nil {
		// The parser's message names what is missing; it holds no key material.
		return nil, nil, recovery.Problemf(recovery.ErrInvalidToken, remedy, "%s %s: %v", envCertificate, path, err)
	}
	if end := certs[0].NotAfter; time.Now().After(end) {
		return nil, nil, recovery.Problemf(recovery.ErrInvalidToken, "create a new certificate, upload its public part to the application (Certificates & secrets) and point AZURE_CLIENT_CERTIFICATE_PATH at it",
			"the certificate in %s expired on %s", path, end.UTC().Format(time.RFC3339))
	}
	return certs, key, nil
}

// ManagedFromEnv is the machine's managed identity: the
// user-assigned one AZURE_CLIENT_ID names, else the system-assigned one.
// The SDK finds the machine's token endpoint itself (IMDS, or the
// IDENTITY_ENDPOINT of App Service, Azure Arc, Cloud Shell, ...). It makes
// no request.
func ManagedFromEnv(getenv func(string) string) (*Identity, error) {
	id := &Identity{Kind: "managed identity", ClientID: strings.TrimSpace(getenv(envClient)), managed: true}
	if h := getenv(envIdentityHdr); h != "" {
		id.hidden = []string{h}
	}
	id.credential = func(o azcore.ClientOptions) (azcore.TokenCredential, error) {
		opts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: o}
		if id.ClientID != "" {
			opts.ID = azidentity.ClientID(id.ClientID)
		}
		return azidentity.NewManagedIdentityCredential(opts)
	}
	return id, nil
}

// Managed reports whether the identity is the machine's managed identity,
// whose token endpoint is local to the machine: requests to it go direct,
// never through a proxy (IMDS refuses proxied requests).
func (id *Identity) Managed() bool { return id.managed }
