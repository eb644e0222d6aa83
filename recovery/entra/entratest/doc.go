// Package entratest is an in-process emulator of Microsoft Entra ID, for
// tests of siem-recovery's Entra ID authentication through the Azure SDK
// (azidentity). It is an httptest server on 127.0.0.1 over HTTPS (the
// SDK refuses anything else), reached through AZURE_AUTHORITY_HOST, whose
// certificate is httptest's (the same as mcastest's TLS server, so one
// SSL_CERT_FILE trusts both). It answers what the SDK asks, as far as
// siem-recovery relies on it:
//
//   - GET /{tenant}/v2.0/.well-known/openid-configuration: the tenant's
//     endpoints, with the issuer on the same host (MSAL checks it). An
//     unknown tenant answers 400 AADSTS90002.
//   - POST /{tenant}/oauth2/v2.0/token, grant_type client_credentials: the
//     scope must hold Resource+"/.default" or GraphResource+"/.default" (the SDK adds "openid
//     offline_access profile"), else AADSTS500011. The client authenticates
//     with its secret (wrong: AADSTS7000215; expired: AADSTS7000222), with
//     a client assertion signed by its registered certificate, verified
//     against that certificate (x5t#S256 thumbprint, PS256 or RS256,
//     audience the token endpoint, issuer and subject the client id; else
//     AADSTS700027, or AADSTS700024 out of its time), or with a federated
//     token from a registered issuer and subject (else AADSTS70021). An
//     unknown client answers AADSTS700016; an application without admin
//     consent AADSTS65001. Refusals have Entra ID's body: error,
//     error_description starting "AADSTSnnn:", error_codes, trace and
//     correlation ids.
//   - Tokens are RS256 JWTs that live Options.TokenLifetime (default one
//     hour; seconds in renewal tests); Options.OnToken hears of each, for
//     mcastest.Server.AcceptToken.
//   - Any other path (instance discovery, say) answers 404 and counts in
//     Stats.Other; FailNext injects 5xx or 429 answers.
//
// NewManagedIdentity emulates App Service's managed identity endpoint
// (IDENTITY_ENDPOINT, IDENTITY_HEADER). StartProxy is an HTTPS proxy that
// records the hosts asked for and reaches nothing but 127.0.0.1.
// NewCertificate and ServiceAccountIssuer make the client certificates
// and the Kubernetes service account tokens the tests authenticate with.
package entratest
