// Package consulagent runs a real Consul agent in dev mode on free loopback
// ports, for tests: started, stopped and started again on the same ports
// (a dev agent forgets its state when it stops). StartCluster runs a
// datacenter instead: servers that elect a leader, and a client agent.
//
// The binary is $LB_CONSUL, else the one `make tools` builds under
// $HOME/.cache/protoc-gen-go-lb/consul-<Version>/consul.
package consulagent

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/toolcache"
)

// Version is the Consul version the project builds and tests against.
const Version = "1.12.9"

// StartTimeout bounds how long Start waits for a leader.
const StartTimeout = 30 * time.Second

// ErrNoBinary means no consul binary was found.
var ErrNoBinary = errors.New("consulagent: no consul binary: run make tools or set LB_CONSUL")

// Binary returns the path of the consul binary.
func Binary() (string, error) {
	p, ok := toolcache.Find("LB_CONSUL", "consul", Version)
	if !ok {
		return "", ErrNoBinary
	}
	return p, nil
}

// Agent is a running dev agent.
type Agent struct {
	bin   string
	dir   string
	hcl   string
	ports map[string]int
	cmd   *exec.Cmd
	done  chan error
}

// Start starts a dev agent with its logs and config in dir; hcl, if not
// empty, is extra configuration (ACLs, ...).
func Start(dir, hcl string) (*Agent, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	// A free port can be taken by another process before consul binds it:
	// try again with new ports.
	for attempt := 1; ; attempt++ {
		a := &Agent{bin: bin, dir: dir, hcl: hcl, ports: map[string]int{}}
		for _, name := range []string{"http", "dns", "grpc", "server", "serf-lan", "serf-wan"} {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			a.ports[name] = p
		}
		err := a.start()
		if err == nil || attempt == 3 {
			return a, err
		}
	}
}

// HTTPAddr is the agent's HTTP API address.
func (a *Agent) HTTPAddr() string { return "127.0.0.1:" + strconv.Itoa(a.ports["http"]) }

// DNSAddr is the agent's DNS address.
func (a *Agent) DNSAddr() string { return "127.0.0.1:" + strconv.Itoa(a.ports["dns"]) }

func (a *Agent) start() error {
	args := []string{"agent", "-dev", "-client", "127.0.0.1", "-bind", "127.0.0.1", "-log-level", "warn"}
	if a.hcl != "" {
		args = append(args, "-hcl", a.hcl)
	}
	if err := a.launch(args); err != nil {
		return err
	}
	return a.waitLeader()
}

// launch starts consul with args and a flag for each of a's ports, its
// output appended to consul.log in a.dir; it does not wait for anything.
func (a *Agent) launch(args []string) error {
	for name, p := range a.ports {
		args = append(args, "-"+name+"-port", strconv.Itoa(p))
	}
	logf, err := os.OpenFile(filepath.Join(a.dir, "consul.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	a.cmd = exec.Command(a.bin, args...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		a.cmd = nil
		return fmt.Errorf("consulagent: %w", err)
	}
	a.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(a.cmd, a.done)
	return nil
}

// exited returns the error of a consul that has exited, else nil.
func (a *Agent) exited() error {
	select {
	case err := <-a.done:
		a.done <- err
		return fmt.Errorf("consulagent: consul exited: %v: %s", err, a.logTail())
	default:
		return nil
	}
}

// waitLeader polls /v1/status/leader: there is no event to wait on in
// another process.
func (a *Agent) waitLeader() error {
	deadline := time.Now().Add(StartTimeout)
	client := http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if err := a.exited(); err != nil {
			return err
		}
		resp, err := client.Get("http://" + a.HTTPAddr() + "/v1/status/leader")
		if err == nil {
			var b [64]byte
			n, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(b[:n]), ":") {
				client.CloseIdleConnections()
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.Stop()
	return fmt.Errorf("consulagent: no leader within %v: %s", StartTimeout, a.logTail())
}

// logTail returns the end of the agent's log, for errors (the test's
// directory is gone by the time anyone reads them).
func (a *Agent) logTail() string {
	b, _ := os.ReadFile(filepath.Join(a.dir, "consul.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop stops the agent (it loses its dev-mode state) and waits for it.
func (a *Agent) Stop() {
	if a.cmd == nil {
		return
	}
	a.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
	a.cmd = nil
}

// Kill kills the agent (SIGKILL, a crash: it neither leaves its cluster
// nor hands anything over) and waits for it.
func (a *Agent) Kill() {
	if a.cmd == nil {
		return
	}
	a.cmd.Process.Kill()
	<-a.done
	a.cmd = nil
}

// Restart starts a stopped agent again on the same ports.
func (a *Agent) Restart() error {
	a.Stop()
	return a.start()
}

// freePort returns a loopback port free for both TCP and UDP.
func freePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		l.Close()
		if err == nil {
			u.Close()
			return p, nil
		}
	}
	return 0, errors.New("consulagent: no free port")
}
