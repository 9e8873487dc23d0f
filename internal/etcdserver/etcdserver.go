// Package etcdserver runs a single-member etcd in process
// (go.etcd.io/etcd/server/v3/embed) on loopback, for the demo and for tests
// that need a real etcd, including stopping it and starting it again on the
// same data directory and ports.
package etcdserver

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
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
	e          *embed.Etcd
}

// Start starts etcd with its data in dir, on a free loopback port unless
// clientAddr ("host:port") is given.
func Start(dir, clientAddr string) (*Server, error) {
	// A free port can be taken by another process before etcd binds it:
	// try again with new ports (when they are ours to choose).
	for attempt := 1; ; attempt++ {
		// A fresh data directory per attempt: a failed start may have
		// bootstrapped a member with the old peer address.
		s := &Server{dir: filepath.Join(dir, "etcd-"+strconv.Itoa(attempt)), clientAddr: clientAddr}
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

func (s *Server) start() error {
	cfg := embed.NewConfig()
	cfg.Name = "lb"
	cfg.Dir = s.dir
	cfg.LogLevel = "fatal" // its shutdown logs errors that are not
	cfg.LogOutputs = []string{"stderr"}
	client := url.URL{Scheme: "http", Host: s.clientAddr}
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
