package entratest

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// Proxy is an HTTPS proxy (CONNECT only) that records every host a
// client asks it for and reaches only 127.0.0.1: a request for any other
// host is refused with 403, without a DNS lookup or a connection. Give it
// as --proxy to prove a run talks to no other host.
type Proxy struct {
	// URL is http://127.0.0.1:PORT.
	URL string

	mu    sync.Mutex
	hosts []string
	conns []net.Conn // tunnels' ends, closed when the test ends
	wg    sync.WaitGroup
}

// StartProxy starts the proxy; it is closed when the test ends.
func StartProxy(tb testing.TB) *Proxy {
	tb.Helper()
	p := &Proxy{}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	p.URL = srv.URL
	tb.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		// A client's idle connections would hold the tunnels open.
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// Hosts are the host:port targets asked for so far, in order, repeats
// included.
func (p *Proxy) Hosts() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.hosts)
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.hosts = append(p.hosts, r.Host)
	p.mu.Unlock()
	host, _, err := net.SplitHostPort(r.Host)
	if r.Method != http.MethodConnect || err != nil || host != "127.0.0.1" {
		http.Error(w, "entratest proxy: only CONNECT to 127.0.0.1", http.StatusForbidden)
		return
	}
	upstream, err := net.DialTimeout("tcp", r.Host, 5*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	client, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		upstream.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, client, upstream)
	p.mu.Unlock()
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close()
		upstream.Close()
		return
	}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(upstream, buf) // what the client sent after CONNECT, buffered or not
		_ = upstream.(*net.TCPConn).CloseWrite()
	}()
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(client, upstream)
		client.Close()
		upstream.Close()
	}()
}
