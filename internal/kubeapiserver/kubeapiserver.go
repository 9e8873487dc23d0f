// Package kubeapiserver runs a real kube-apiserver on loopback against an
// in-process etcd (internal/etcdserver), for tests of the Kubernetes
// backend: no controllers and no kubelet, so tests write Services and
// EndpointSlices themselves, as the endpointslice controller would. It can
// be stopped and started again on the same port and etcd.
//
// The binary is $LB_KUBE_APISERVER, else the one `make tools` builds under
// $HOME/.cache/protoc-gen-go-lb/kube-apiserver-<Version>/kube-apiserver.
//
// Two users authenticate with static tokens (--token-auth-file): Admin, in
// system:masters, which may do anything, and Client, which may do only
// what RBAC rules the test binds to it allow (--authorization-mode=RBAC).
package kubeapiserver

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/etcdserver"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/toolcache"
)

// Version is the Kubernetes version the project builds and tests against.
const Version = "1.37.2"

// StartTimeout bounds how long Start waits for /readyz.
const StartTimeout = 60 * time.Second

// The users of the token file.
const (
	Admin  = "lb-admin"  // in system:masters
	Client = "lb-client" // RBAC decides
)

// ErrNoBinary means no kube-apiserver binary was found.
var ErrNoBinary = errors.New("kubeapiserver: no kube-apiserver binary: run make tools or set LB_KUBE_APISERVER")

// Binary returns the path of the kube-apiserver binary.
func Binary() (string, error) {
	p, ok := toolcache.Find("LB_KUBE_APISERVER", "kube-apiserver", Version)
	if !ok {
		return "", ErrNoBinary
	}
	return p, nil
}

// Server is a running kube-apiserver and its etcd.
type Server struct {
	bin  string
	dir  string
	port int
	etcd *etcdserver.Server
	cmd  *exec.Cmd
	done chan error
}

// Start starts etcd and a kube-apiserver with their files in dir.
func Start(dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	e, err := etcdserver.Start(dir, "")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, etcd: e}
	if err := s.files(); err != nil {
		e.Stop()
		return nil, err
	}
	// A free port can be taken by another process before the API server
	// binds it: try again with another.
	for attempt := 1; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			e.Stop()
			return nil, err
		}
		err = s.start()
		if err == nil || attempt == 3 {
			if err != nil {
				e.Stop()
			}
			return s, err
		}
	}
}

// files writes the token file and the service account key.
func (s *Server) files() error {
	tokens := fmt.Sprintf("%s,%s,1,system:masters\n%s,%s,2\n", token(Admin), Admin, token(Client), Client)
	if err := os.WriteFile(filepath.Join(s.dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	return os.WriteFile(filepath.Join(s.dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600)
}

// token is user's bearer token.
func token(user string) string { return "token-" + user }

// URL is the API server's address, https://127.0.0.1:port.
func (s *Server) URL() string { return "https://127.0.0.1:" + strconv.Itoa(s.port) }

// Kubeconfig writes a kubeconfig for user, whose context's namespace is
// namespace unless that is empty, and returns its path. It trusts the API
// server's self-signed certificate (in the cert dir).
func (s *Server) Kubeconfig(user, namespace string) (string, error) {
	path := filepath.Join(s.dir, user+"-"+namespace+".kubeconfig")
	ns := ""
	if namespace != "" {
		ns = ", namespace: " + namespace
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: %s%s}
current-context: test
`, s.URL(), filepath.Join(s.dir, "certs", "apiserver.crt"), user, token(user), user, ns)
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

func (s *Server) start() error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "kube-apiserver.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.cmd = exec.Command(s.bin,
		"--etcd-servers="+s.etcd.URL(),
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(s.port),
		"--cert-dir="+filepath.Join(s.dir, "certs"),
		"--token-auth-file="+filepath.Join(s.dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(s.dir, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(s.dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none",
		"--v=0",
	)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return fmt.Errorf("kubeapiserver: %w", err)
	}
	s.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(s.cmd, s.done)
	return s.waitReady()
}

// waitReady polls /readyz: there is no event to wait on in another
// process.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(StartTimeout)
	client := http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.done <- err
			s.cmd = nil
			return fmt.Errorf("kubeapiserver: exited: %v: %s", err, s.logTail())
		default:
		}
		req, _ := http.NewRequest("GET", s.URL()+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token(Admin))
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.stopProcess()
	return fmt.Errorf("kubeapiserver: not ready within %v: %s", StartTimeout, s.logTail())
}

// logTail returns the end of the log, for errors.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "kube-apiserver.log"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// StopAPIServer stops the API server (SIGTERM, then SIGKILL after 10 s)
// and waits; etcd keeps running.
func (s *Server) StopAPIServer() { s.stopProcess() }

func (s *Server) stopProcess() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// RestartAPIServer starts a stopped API server again on the same port.
func (s *Server) RestartAPIServer() error {
	s.stopProcess()
	return s.start()
}

// Stop kills the API server (the test is over: no need for its graceful
// shutdown, which takes seconds) and stops etcd.
func (s *Server) Stop() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		<-s.done
		s.cmd = nil
	}
	s.etcd.Stop()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
