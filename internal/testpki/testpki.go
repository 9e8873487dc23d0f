// Package testpki makes up certificate authorities for tests: a CA and the
// server and client certificates it signs, as PEM files in a temporary
// directory; and a HandshakeServer, an impostor that answers with a
// certificate and records whether its clients asked for TLS.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// CA is a certificate authority a test makes up, writing its
// certificates and keys as PEM files in a temporary directory.
type CA struct {
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	CAFile string // the CA certificate, PEM
}

func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{dir: t.TempDir(), cert: cert, key: key}
	ca.CAFile = ca.write(t, name+"-ca.pem", "CERTIFICATE", der)
	return ca
}

func (ca *CA) write(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(ca.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Issue signs a certificate for cn and returns its certificate and key
// files. With hosts (IP addresses or DNS names) it is a server certificate
// for them, usable as a client certificate too (etcd's gateway dials its
// server with it); without, a client certificate.
func (ca *CA) Issue(t testing.TB, cn string, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(hosts) > 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return ca.write(t, cn+".pem", "CERTIFICATE", der), ca.write(t, cn+"-key.pem", "PRIVATE KEY", keyDER)
}

// HandshakeServer stands where a client expects its server: on loopback,
// it answers every connection with a TLS handshake with its certificate
// and then closes it, serving nothing. It records how each connection
// began: a client that asks for TLS sends a TLS handshake record first
// (byte 0x16), a plaintext client (an HTTP/2 preface, an HTTP request)
// anything else. It stops when the test ends.
type HandshakeServer struct {
	// Addr is its "host:port".
	Addr string
	lis  net.Listener
	cfg  *tls.Config
	wg   sync.WaitGroup

	mu      sync.Mutex
	tls     int                   // guarded by mu; connections that began with a TLS record
	plain   int                   // guarded by mu; connections that began otherwise
	errs    []error               // guarded by mu; the server side's handshake errors
	changed chan struct{}         // guarded by mu; closed at the next connection recorded
	conns   map[net.Conn]struct{} // guarded by mu; open connections
}

// ServeHandshakes starts a HandshakeServer with the certificate in
// certFile and keyFile.
func ServeHandshakes(t testing.TB, certFile, keyFile string) *HandshakeServer {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &HandshakeServer{
		Addr:    lis.Addr().String(),
		lis:     lis,
		cfg:     &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
		changed: make(chan struct{}),
		conns:   map[net.Conn]struct{}{},
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		lis.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *HandshakeServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.lis.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.handle(c)
		}()
	}
}

// handle reads the first byte of c, records it, and makes the TLS
// handshake with that byte put back in front.
func (s *HandshakeServer) handle(c net.Conn) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		return // closed without a byte: neither TLS nor plaintext
	}
	isTLS := first[0] == 0x16
	var herr error
	if isTLS {
		herr = tls.Server(&replayConn{Conn: c, first: first[:]}, s.cfg).Handshake()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if isTLS {
		s.tls++
		if herr != nil {
			s.errs = append(s.errs, herr)
		}
	} else {
		s.plain++
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// replayConn reads first before the rest of its Conn.
type replayConn struct {
	net.Conn
	first []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(b, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// Conns returns how many connections began with a TLS handshake record
// and how many began otherwise (plaintext), and the server side's
// handshake errors (a client that refused the certificate says why in
// its alert: "remote error: tls: unknown certificate authority").
func (s *HandshakeServer) Conns() (tlsConns, plainConns int, errs []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tls, s.plain, append([]error(nil), s.errs...)
}

// WaitConns waits until n connections in all have been recorded, failing
// the test after timeout.
func (s *HandshakeServer) WaitConns(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, changed := s.tls+s.plain, s.changed
		s.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%s: %d connections within %v, want %d", s.Addr, got, timeout, n)
		}
	}
}

// CheckRefused fails the test unless every connection so far began a TLS
// handshake (none was plaintext), none completed, and the client refused
// the server's certificate ("bad certificate", its alert for an unknown
// authority); it returns the number of handshakes.
func (s *HandshakeServer) CheckRefused(t testing.TB) int {
	t.Helper()
	tlsConns, plainConns, herrs := s.Conns()
	if tlsConns == 0 || plainConns != 0 {
		t.Errorf("the impostor saw %d TLS and %d plaintext connections, want TLS only", tlsConns, plainConns)
	}
	refused := 0
	for _, err := range herrs {
		if strings.Contains(err.Error(), "bad certificate") {
			refused++
		}
	}
	if len(herrs) != tlsConns || refused == 0 {
		t.Errorf("the impostor's handshakes: %d, %d failed (%v), want every one failed, with bad certificate among them", tlsConns, len(herrs), herrs)
	}
	return tlsConns
}
