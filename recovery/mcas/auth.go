package mcas

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	azruntime "github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"siem-recovery/recovery"
)

// Scope is what an access token for the activities API is requested
// for: the application "Microsoft Cloud App Security".
const Scope = "05a65629-4c1b-48c1-a78b-804c4abdd4af/.default"

// PublicAuthority is Entra ID's authority host in the public cloud, the
// default when AZURE_AUTHORITY_HOST is not set.
const PublicAuthority = "https://login.microsoftonline.com/"

// authorizer gives the Authorization header of API requests. Its errors
// are *failure (retried or permanent, as the API's own) or the context's.
type authorizer interface {
	// authorization returns the header for a request about to be sent,
	// renewing the token first when it is about to expire.
	authorization(ctx context.Context) (string, error)
	// renew makes the next authorization obtain a new token, after the
	// API refused the current one; false when the token cannot be
	// renewed (one given by hand).
	renew() bool
	// refusedRemedy is what to do when the API refuses the token with
	// status code (401 or 403).
	refusedRemedy(code int) string
	// String describes the credential, without any secret, for the doctor.
	String() string
}

// staticToken is a token given by hand: a legacy MCAS API token, or a JWT.
type staticToken struct {
	token  recovery.Token
	header string
	kind   string
}

// newStaticToken checks the token's shape; it makes no request.
func newStaticToken(t recovery.Token) (*staticToken, error) {
	scheme, err := authorization(t)
	if err != nil {
		return nil, err
	}
	kind := "MCAS API token"
	if scheme == "Bearer" {
		kind = "access token (JWT) given by hand"
	}
	return &staticToken{token: t, header: scheme + " " + t.Reveal(), kind: kind}, nil
}

func (s *staticToken) authorization(context.Context) (string, error) { return s.header, nil }
func (s *staticToken) renew() bool                                   { return false }
func (s *staticToken) refusedRemedy(int) string                      { return remedyToken }
func (s *staticToken) String() string                                { return s.kind }

// Identity is an Entra ID identity the API accepts tokens of: an
// application (client secret, client certificate, or a federated token
// such as Kubernetes workload identity) or the machine's managed
// identity. Build it with EntraFromEnv or ManagedIdentityFromEnv.
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

const remedyEntraEnv = "set AZURE_TENANT_ID, AZURE_CLIENT_ID and one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE (docs/runbook.md, \"Create the Entra application\")"

// EntraFromEnv reads an Entra ID application from the Azure SDK's
// standard environment (getenv is os.Getenv outside tests): the tenant,
// the client id, and the first of a client secret, a certificate file or
// a federated token file. It reads the certificate, so that a bad one is
// reported before any request; it makes no request. Its errors are
// *recovery.Error: ErrInvalidToken for a missing or unreadable
// credential, ErrUsage for an AZURE_AUTHORITY_HOST that is no https URL.
func EntraFromEnv(getenv func(string) string) (*Identity, error) {
	id := &Identity{TenantID: strings.TrimSpace(getenv(envTenant)), ClientID: strings.TrimSpace(getenv(envClient))}
	for _, v := range []struct{ name, value string }{{envTenant, id.TenantID}, {envClient, id.ClientID}} {
		if v.value == "" {
			return nil, recovery.Problemf(recovery.ErrInvalidToken, remedyEntraEnv, "%s is not set", v.name)
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
		return nil, recovery.Problemf(recovery.ErrInvalidToken, remedyEntraEnv,
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
			"%s %q is not an https:// host", envAuthority, RedactURL(raw))
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

// ManagedIdentityFromEnv is the machine's managed identity: the
// user-assigned one AZURE_CLIENT_ID names, else the system-assigned one.
// The SDK finds the machine's token endpoint itself (IMDS, or the
// IDENTITY_ENDPOINT of App Service, Azure Arc, Cloud Shell, ...). It makes
// no request.
func ManagedIdentityFromEnv(getenv func(string) string) (*Identity, error) {
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

// entraToken obtains access tokens for an Identity, keeps the current one
// and renews it before it expires.
type entraToken struct {
	id        *Identity
	options   azcore.ClientOptions
	transport *watchedTransport
	timeout   time.Duration
	network   func(ctx context.Context, err error, target string) error
	log       *slog.Logger
	redactor  *recovery.Redactor // told each secret and token as it is known

	mu       sync.Mutex
	cred     azcore.TokenCredential
	token    azcore.AccessToken
	lifetime time.Duration // of the current token, when it was obtained
	stale    bool          // the API refused the current token
}

// renewMargin is how long before its expiry a token is replaced: MSAL's
// own cache hands out a cached token only while it has more than five
// minutes left, so asking within that margin always brings a new one.
// Short-lived tokens (tests) are renewed at half their life.
func renewMargin(lifetime time.Duration) time.Duration { return min(5*time.Minute, lifetime/2) }

func newEntraToken(id *Identity, client *http.Client, timeout time.Duration, network func(context.Context, error, string) error, log *slog.Logger, redactor *recovery.Redactor) *entraToken {
	t := &watchedTransport{client: client}
	for _, secret := range id.hidden {
		redactor.Add(secret)
	}
	return &entraToken{
		id:        id,
		transport: t,
		timeout:   timeout,
		network:   network,
		log:       log,
		redactor:  redactor,
		options: azcore.ClientOptions{
			Transport: t,
			// One retry policy: the Source's, which counts failures toward
			// MaxCriticalErrors. The SDK would retry on its own otherwise.
			Retry: policy.RetryOptions{MaxRetries: -1},
			Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: id.Authority},
		},
	}
}

func (e *entraToken) String() string { return e.id.String() }

func (e *entraToken) renew() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stale = true
	return true
}

func (e *entraToken) refusedRemedy(code int) string {
	if code == http.StatusForbidden {
		return "grant the application the API permission Investigation.Read of \"Microsoft Cloud App Security\", with admin consent (docs/runbook.md)"
	}
	return "check that AZURE_TENANT_ID is the tenant of --source, and that the application has the API permission Investigation.Read of \"Microsoft Cloud App Security\" with admin consent"
}

func (e *entraToken) authorization(ctx context.Context) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.token.Token == "" || e.stale || time.Until(e.token.ExpiresOn) <= renewMargin(e.lifetime) {
		if err := e.obtain(ctx); err != nil {
			return "", err
		}
	}
	return "Bearer " + e.token.Token, nil
}

// validFor obtains a token if none is held and tells how long the current
// one has left.
func (e *entraToken) validFor(ctx context.Context) (time.Duration, error) {
	if _, err := e.authorization(ctx); err != nil {
		return 0, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return time.Until(e.token.ExpiresOn), nil
}

// obtain gets a new token; e.mu is held.
func (e *entraToken) obtain(ctx context.Context) error {
	opts := policy.TokenRequestOptions{Scopes: []string{Scope}}
	if e.cred == nil || e.stale && !e.id.managed {
		// A new credential has an empty cache: the token it obtains is
		// new even if the refused one had not expired.
		cred, err := e.id.credential(e.options)
		if err != nil {
			return &failure{permanent: recovery.Problemf(recovery.ErrInvalidToken, remedyEntraEnv, "the %s cannot be used: %v", e.id.Kind, firstLine(err.Error(), e.redactor))}
		}
		e.cred = cred
	} else if e.stale {
		// The managed identity's cache is shared by every credential of
		// the process; claims make it ask the machine's endpoint again.
		opts.Claims = `{"access_token":{"nbf":{"essential":true,"value":"` + strconv.FormatInt(time.Now().Unix(), 10) + `"}}}`
	}
	rctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	e.transport.reset()
	start := time.Now()
	tok, err := e.cred.GetToken(rctx, opts)
	if err != nil {
		return e.failure(ctx, err)
	}
	renewal := e.token.Token != ""
	e.redactor.Add(tok.Token)
	e.token, e.lifetime, e.stale = tok, tok.ExpiresOn.Sub(start), false
	attrs := []any{"identity", e.id.Kind, "valid_for", e.lifetime.Round(time.Second)}
	if renewal {
		e.log.Debug("renewed the access token", attrs...)
	} else {
		e.log.Info("obtained an access token", attrs...)
	}
	return nil
}

// failure classifies an error of the SDK; e.mu is held. A refusal by Entra ID (an AADSTS
// code) is permanent; an unreachable authority, a 5xx and a timeout are
// critical, retried like the API's own failures.
func (e *entraToken) failure(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("obtain an access token: %w", ctx.Err())
	}
	where := "Entra ID at " + e.id.Authority
	if e.id.managed {
		where = "the managed identity endpoint"
	}
	var refused *azidentity.AuthenticationFailedError
	if errors.As(err, &refused) && refused.RawResponse != nil {
		return e.answered(refused.RawResponse, where)
	}
	// The SDK reports a network error as text only: the transport kept it.
	if netErr := e.transport.last(); netErr != nil {
		err := e.network(ctx, netErr, where)
		var f *failure
		if errors.As(err, &f) && f.permanent == nil {
			f.reason = "token request, " + f.reason // not the API's failure
		}
		return err
	}
	msg := firstLine(err.Error(), e.redactor)
	var final interface{ NonRetriable() }
	if e.id.managed && !errors.As(err, &refused) && errors.As(err, &final) {
		return &failure{permanent: recovery.Problemf(recovery.ErrInvalidToken, "run on an Azure resource with a managed identity, or use --auth entra",
			"no managed identity is available here: %s", msg)}
	}
	return &failure{reason: "token request failed", cause: fmt.Errorf("%s: %s", where, msg)}
}

// entraError is the body of an error answer of Entra ID's endpoints.
type entraError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Codes       []int  `json:"error_codes"`
	Correlation string `json:"correlation_id"`
}

// answered classifies an error answer of the authority; e.mu is held.
func (e *entraToken) answered(resp *http.Response, where string) error {
	code := resp.StatusCode
	body, _ := azruntime.Payload(resp)
	var ans entraError
	_ = json.Unmarshal(body, &ans)
	if f := retried(resp, fmt.Errorf("%s answered %d", where, code)); f != nil {
		f.reason = "token request, " + f.reason // not the API's failure
		return f
	}
	desc := firstLine(ans.Description, e.redactor)
	if len(ans.Codes) > 0 {
		meaning, remedy := aadsts(ans.Codes[0])
		if meaning == "" {
			meaning = desc
		}
		detail := fmt.Sprintf("%s refused a token for %s: AADSTS%d, %s", where, e.subject(), ans.Codes[0], meaning)
		if ans.Correlation != "" {
			detail += " (correlation id " + ans.Correlation + ")"
		}
		return &failure{permanent: recovery.Problemf(recovery.ErrInvalidToken, remedy, "%s", detail)}
	}
	if desc == "" {
		desc = firstLine(string(body), e.redactor)
	}
	remedy := "check AZURE_AUTHORITY_HOST names the Entra ID host of the tenant's cloud"
	if e.id.managed {
		remedy = "check AZURE_CLIENT_ID names a user-assigned identity attached to this machine, or leave it unset for the system-assigned one"
	}
	return &failure{permanent: recovery.Problemf(recovery.ErrInvalidToken, remedy, "%s answered %d to the token request for %s: %s", where, code, e.subject(), orNone(desc))}
}

func (e *entraToken) subject() string {
	if e.id.managed {
		return e.id.String()
	}
	return fmt.Sprintf("application %s in tenant %s", e.id.ClientID, e.id.TenantID)
}

func orNone(s string) string {
	if s == "" {
		return "(no explanation)"
	}
	return s
}

// aadsts explains the Entra ID error codes an operator meets when setting
// up the application: what it means, and the remedy.
func aadsts(code int) (meaning, remedy string) {
	const registration = "Entra admin center > App registrations"
	switch code {
	case 7000215:
		return "the client secret is wrong", "copy the secret's Value, not its Secret ID, into AZURE_CLIENT_SECRET, or create a new secret (" + registration + " > Certificates & secrets)"
	case 7000222:
		return "the client secret has expired", "create a new client secret (" + registration + " > Certificates & secrets) and put its Value in AZURE_CLIENT_SECRET"
	case 700016:
		return "no application with this client id in the tenant", "check AZURE_CLIENT_ID is the application (client) ID and AZURE_TENANT_ID the directory (tenant) ID it is registered in"
	case 90002:
		return "no such tenant", "check AZURE_TENANT_ID is the directory (tenant) ID, and AZURE_AUTHORITY_HOST the tenant's cloud"
	case 900023:
		return "the tenant id is not a valid tenant", "set AZURE_TENANT_ID to the directory (tenant) ID, a GUID"
	case 65001:
		return "an administrator has not consented to the application's API permission", "grant admin consent for Investigation.Read of \"Microsoft Cloud App Security\" (" + registration + " > API permissions)"
	case 500011:
		return "the tenant has no Microsoft Cloud App Security service principal", "check the tenant has Microsoft Defender for Cloud Apps and AZURE_TENANT_ID is that tenant"
	case 700027:
		return "the client assertion's signature is not valid: the certificate is not registered for the application, or has expired", "upload the certificate's public part to the application (" + registration + " > Certificates & secrets), or a new one if it expired"
	case 700024:
		return "the client assertion is not within its valid time range", "check this machine's clock"
	case 70021, 700213, 700211, 700212:
		return "no federated credential of the application matches the service account token", "add a federated credential for the service account (issuer and subject system:serviceaccount:NAMESPACE:NAME) to the application (" + registration + " > Certificates & secrets > Federated credentials)"
	case 7000112, 7000113:
		return "the application is disabled", "enable the application's service principal (Enterprise applications > Properties)"
	case 7000229:
		return "the application has no service principal in the tenant", "create it by granting admin consent, or register the application in this tenant"
	case 53003:
		return "a Conditional Access policy blocked the token", "exclude the application from the policy, or allow this network"
	}
	return "", "look the code up at https://login.microsoftonline.com/error, then fix the application or the AZURE_ variables"
}

// jwtLike matches what may be a token (access token, assertion) in text
// an SDK produced.
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*`)

// firstLine is the first line of a message from the SDK or the authority,
// cut short, without the secrets and without anything shaped like a token
// (the SDK's messages can carry a whole answer, access token included),
// escaped.
func firstLine(msg string, r *recovery.Redactor) string {
	msg, _, _ = strings.Cut(strings.TrimSpace(msg), "\n")
	msg = jwtLike.ReplaceAllString(r.Redact(msg), "[REDACTED]")
	return recovery.Escape(cut(strings.TrimSpace(msg), 300))
}

// watchedTransport sends the SDK's requests through the Source's HTTP
// client (its proxy, its trusted roots, its redirect policy) and keeps the
// last network error, which the SDK passes on as text only.
type watchedTransport struct {
	client *http.Client
	mu     sync.Mutex
	err    error
}

func (t *watchedTransport) Do(r *http.Request) (*http.Response, error) {
	resp, err := t.client.Do(r)
	t.mu.Lock()
	t.err = err
	t.mu.Unlock()
	return resp, err
}

func (t *watchedTransport) reset() { t.mu.Lock(); t.err = nil; t.mu.Unlock() }

func (t *watchedTransport) last() error { t.mu.Lock(); defer t.mu.Unlock(); return t.err }
