// Package etcdserver runs a single-member etcd in process
// (go.etcd.io/etcd/server/v3/embed) on loopback, for the demo and for tests
// that need a real etcd, including stopping it and starting it again on the
// same data directory and ports, and serving clients over TLS (WithTLS).
package etcdserver

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// StartTimeout bounds how long Start waits for the server to be ready.
const StartTimeout = 30 * time.Second

// Server is an embedded etcd.
type Server struct {
	dir        string
	clientAddr string
	peerAddr   string
	tls        *TLS
	e          *embed.Etcd
}

// TLS is how a server serves its clients over TLS: with a certificate, and
// optionally requiring client certificates signed by a CA. Peers stay on
// plaintext loopback.
type TLS struct {
	// CertFile and KeyFile are the server's PEM certificate and key. The
	// certificate must be valid for the client address (IP 127.0.0.1) and,
	// as etcd's own gateway dials the server with it, for client
	// authentication too (both server and client extended key usage).
	CertFile, KeyFile string
	// ClientCAFile is the PEM CA that client certificates must be signed
	// by; empty means client certificates are not asked for.
	ClientCAFile string
}

// Option configures a Server.
type Option func(*Server)

// WithTLS serves clients over TLS only.
func WithTLS(t TLS) Option { return func(s *Server) { s.tls = &t } }

// Start starts etcd with its data in dir, on a free loopback port unless
// clientAddr ("host:port") is given.
func Start(dir, clientAddr string, opts ...Option) (*Server, error) {
	// A free port can be taken by another process before etcd binds it:
	// try again with new ports (when they are ours to choose).
	for attempt := 1; ; attempt++ {
		// A fresh data directory per attempt: a failed start may have
		// bootstrapped a member with the old peer address.
		s := &Server{dir: filepath.Join(dir, "etcd-"+strconv.Itoa(attempt)), clientAddr: clientAddr}
		for _, o := range opts {
			o(s)
		}
		var err error
		if s.clientAddr == "" {
			if s.clientAddr, err = freeAddr(); err != nil {
				return nil, err
			}
		}
		if s.peerAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		err = s.start()
		if err == nil || attempt == 3 {
			return s, err
		}
	}
}

// Endpoint is the client address, "host:port".
func (s *Server) Endpoint() string { return s.clientAddr }

// URL is the client URL: "https://host:port" with WithTLS, else
// "http://host:port".
func (s *Server) URL() string {
	u := s.clientURL()
	return u.String()
}

func (s *Server) clientURL() url.URL {
	if s.tls != nil {
		return url.URL{Scheme: "https", Host: s.clientAddr}
	}
	return url.URL{Scheme: "http", Host: s.clientAddr}
}

func (s *Server) start() error {
	cfg := embed.NewConfig()
	cfg.Name = "lb"
	cfg.Dir = s.dir
	cfg.LogLevel = "fatal" // its shutdown logs errors that are not
	cfg.LogOutputs = []string{"stderr"}
	// bcrypt's minimum cost: a password check takes a millisecond, not a
	// second under -race, and none is left running when the server stops
	// (a TLS server does not wait for its handlers).
	cfg.BcryptCost = 4
	client := s.clientURL()
	if s.tls != nil {
		ti := &cfg.ClientTLSInfo
		ti.CertFile, ti.KeyFile = s.tls.CertFile, s.tls.KeyFile
		ti.TrustedCAFile, ti.ClientCertAuth = s.tls.ClientCAFile, s.tls.ClientCAFile != ""
	}
	peer := url.URL{Scheme: "http", Host: s.peerAddr}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcdserver: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcdserver: %w", err)
	case <-time.After(StartTimeout):
		e.Server.Stop()
		e.Close()
		return fmt.Errorf("etcdserver: not ready within %v", StartTimeout)
	}
	s.e = e
	return nil
}

// Stop stops etcd; its data stays in the directory.
func (s *Server) Stop() {
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

// Restart starts a stopped server again on the same directory and ports.
func (s *Server) Restart() error {
	s.Stop()
	return s.start()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Cluster is a cluster of embedded etcd members on loopback.
type Cluster struct {
	members []*embed.Etcd
	clients []string
}

// StartCluster starts an n-member cluster with its data under dir. Free
// ports can be taken before etcd binds them: it tries again, with new ports
// and data directories, up to 3 times.
func StartCluster(dir string, n int) (*Cluster, error) {
	for attempt := 1; ; attempt++ {
		c, err := startCluster(filepath.Join(dir, "cluster-"+strconv.Itoa(attempt)), n)
		if err == nil || attempt == 3 {
			return c, err
		}
	}
}

func startCluster(dir string, n int) (*Cluster, error) {
	c := &Cluster{}
	cfgs := make([]*embed.Config, n)
	var initial []string
	for i := range n {
		ca, err := freeAddr()
		if err != nil {
			return nil, err
		}
		pa, err := freeAddr()
		if err != nil {
			return nil, err
		}
		cfg := embed.NewConfig()
		cfg.Name = "m" + strconv.Itoa(i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cfg.LogLevel = "fatal"
		cfg.LogOutputs = []string{"stderr"}
		client, peer := url.URL{Scheme: "http", Host: ca}, url.URL{Scheme: "http", Host: pa}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfgs[i] = cfg
		initial = append(initial, cfg.Name+"="+peer.String())
		c.clients = append(c.clients, ca)
	}
	for _, cfg := range cfgs {
		cfg.InitialCluster = strings.Join(initial, ",")
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("etcdserver: member %s: %w", cfg.Name, err)
		}
		c.members = append(c.members, e)
	}
	for _, e := range c.members {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			c.Stop()
			return nil, fmt.Errorf("etcdserver: %w", err)
		case <-time.After(StartTimeout):
			c.Stop()
			return nil, fmt.Errorf("etcdserver: cluster not ready within %v", StartTimeout)
		}
	}
	return c, nil
}

// Endpoints are the members' client addresses, "host:port".
func (c *Cluster) Endpoints() []string { return c.clients }

// Leader returns the index of the member that leads, or -1.
func (c *Cluster) Leader() int {
	for i, e := range c.members {
		if e != nil && e.Server.Leader() == e.Server.MemberID() {
			return i
		}
	}
	return -1
}

// StopMember stops member i.
func (c *Cluster) StopMember(i int) {
	if e := c.members[i]; e != nil {
		e.Close()
		c.members[i] = nil
	}
}

// Stop stops every member still running.
func (c *Cluster) Stop() {
	for i := range c.members {
		c.StopMember(i)
	}
}
