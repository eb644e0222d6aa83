package sink

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// tlsConn is a TLS connection to the receiver that remembers whether the
// receiver asked for a client certificate: with TLS 1.3 the handshake ends
// on our side before the receiver has checked ours, so a refusal shows
// later, as the connection dropped on the first write or read.
type tlsConn struct {
	*tls.Conn
	certRequested bool
}

// handshakeError is a failed TLS handshake, told apart from a failed TCP
// connection: the receiver is up, and its answer says what is wrong.
type handshakeError struct {
	err           error
	certRequested bool
}

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// dialTLS connects to addr and runs the TLS handshake, within timeout for
// both. Certificates offers the client certificates of cfg as crypto/tls
// would, and notes that the receiver asked for one.
func dialTLS(ctx context.Context, timeout time.Duration, addr string, cfg *tls.Config) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &tlsConn{}
	cfg = cfg.Clone()
	certs := cfg.Certificates
	cfg.GetClientCertificate = func(req *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		c.certRequested = true
		for i := range certs {
			if req.SupportsCertificate(&certs[i]) == nil {
				return &certs[i], nil
			}
		}
		return &tls.Certificate{}, nil // none fits: send none
	}
	c.Conn = tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, &handshakeError{err: err, certRequested: c.certRequested}
	}
	return c, nil
}
