package consulagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// clusterHCL is the configuration of every member of a cluster: raft's
// fastest timings (a lost leader is noticed within about 1 s instead of
// 5). The members also retry their joins every 200 ms, not every 30 s,
// as they come up together.
const clusterHCL = `performance { raft_multiplier = 1 }`

// Cluster is a Consul datacenter on loopback: servers that elect a leader
// among themselves, and one client agent joined to them, the local agent
// that applications talk to. Each member has its own data directory and
// ports; the gRPC ports, and the servers' DNS ports, are off.
type Cluster struct {
	servers []*Agent
	client  *Agent
}

// StartCluster starts n servers (-server -bootstrap-expect n) and a client
// agent with their data under dir, and waits until the servers have elected
// a leader with all n as voters and every member knows it. Free ports can be
// taken before consul binds them: it tries again, with new ports and data
// directories, up to 3 times.
func StartCluster(dir string, n int) (*Cluster, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		c, err := startCluster(bin, filepath.Join(dir, "cluster-"+strconv.Itoa(attempt)), n)
		if err == nil || attempt == 3 {
			return c, err
		}
	}
}

func startCluster(bin, dir string, n int) (*Cluster, error) {
	c := &Cluster{}
	member := func(node string, ports ...string) (*Agent, error) {
		a := &Agent{bin: bin, dir: filepath.Join(dir, node), ports: map[string]int{}}
		if err := os.MkdirAll(filepath.Join(a.dir, "data"), 0o755); err != nil {
			return nil, err
		}
		for _, name := range ports {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			a.ports[name] = p
		}
		return a, nil
	}
	for i := range n {
		a, err := member("server-"+strconv.Itoa(i), "http", "serf-lan", "serf-wan", "server")
		if err != nil {
			return nil, err
		}
		c.servers = append(c.servers, a)
	}
	client, err := member("client", "http", "dns", "serf-lan")
	if err != nil {
		return nil, err
	}
	c.client = client
	var join []string // every server's serf LAN address
	for _, s := range c.servers {
		join = append(join, "-retry-join", "127.0.0.1:"+strconv.Itoa(s.ports["serf-lan"]))
	}
	args := func(a *Agent, extra ...string) []string {
		args := []string{"agent", "-node", filepath.Base(a.dir), "-data-dir", filepath.Join(a.dir, "data"),
			"-bind", "127.0.0.1", "-client", "127.0.0.1", "-log-level", "warn", "-hcl", clusterHCL,
			"-retry-interval", "200ms"}
		if _, ok := a.ports["dns"]; !ok {
			args = append(args, "-dns-port", "-1")
		}
		args = append(args, "-grpc-port", "-1")
		return append(append(args, extra...), join...)
	}
	for _, s := range c.servers {
		if err := s.launch(args(s, "-server", "-bootstrap-expect", strconv.Itoa(n))); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.client.launch(args(c.client)); err != nil {
		c.Stop()
		return nil, err
	}
	if err := c.waitReady(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// waitReady polls the members (other processes: there is no event to wait
// on) until the raft configuration, read through the client agent, has
// every server as a voter and one of them as leader, and every server
// reports that leader.
func (c *Cluster) waitReady() error {
	deadline := time.Now().Add(StartTimeout)
	var last error
	for time.Now().Before(deadline) {
		for _, a := range c.members() {
			if err := a.exited(); err != nil {
				return err
			}
		}
		if last = c.ready(); last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("consulagent: cluster not ready within %v: %v: %s", StartTimeout, last, c.client.logTail())
}

func (c *Cluster) ready() error {
	var cfg struct {
		Servers []struct {
			Address       string
			Leader, Voter bool
		}
	}
	if err := getJSON(c.client.HTTPAddr(), "/v1/operator/raft/configuration", &cfg); err != nil {
		return err
	}
	leader := ""
	voters := 0
	for _, s := range cfg.Servers {
		if s.Voter {
			voters++
		}
		if s.Leader {
			leader = s.Address
		}
	}
	if voters != len(c.servers) || leader == "" {
		return fmt.Errorf("raft configuration %+v", cfg.Servers)
	}
	for i, s := range c.servers {
		if got := s.leader(); got != leader {
			return fmt.Errorf("server %d reports leader %q, not %q", i, got, leader)
		}
	}
	if got := c.client.leader(); got != leader {
		return fmt.Errorf("the client agent reports leader %q, not %q", got, leader)
	}
	return nil
}

func (c *Cluster) members() []*Agent { return append(append([]*Agent(nil), c.servers...), c.client) }

// Client is the client agent: applications' local agent.
func (c *Cluster) Client() *Agent { return c.client }

// Server returns server i.
func (c *Cluster) Server(i int) *Agent { return c.servers[i] }

// Leader returns the index of the server that leads (by its own account),
// or -1.
func (c *Cluster) Leader() int {
	for i, s := range c.servers {
		if s.cmd != nil && s.leader() == s.serverAddr() {
			return i
		}
	}
	return -1
}

// WaitLeader waits, within timeout, until every running member, the client
// agent too, reports the same leader, one of the running servers, and
// returns its index. The client agent learns it from a server it asks: one
// that is down fails the request, and the agent turns to another.
func (c *Cluster) WaitLeader(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		leader, agreed := -1, true
		for _, a := range c.members() {
			if a.cmd == nil {
				continue
			}
			l := c.index(a.leader())
			if l < 0 || (leader >= 0 && l != leader) {
				agreed = false
				break
			}
			leader = l
		}
		if agreed && leader >= 0 {
			return leader, nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("consulagent: the servers agree on no leader within %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// index returns the index of the running server whose raft address is addr,
// or -1.
func (c *Cluster) index(addr string) int {
	for i, s := range c.servers {
		if s.cmd != nil && s.serverAddr() == addr {
			return i
		}
	}
	return -1
}

// StopMember kills server i (SIGKILL: a crash; it neither leaves the cluster
// nor hands its leadership over).
func (c *Cluster) StopMember(i int) { c.servers[i].Kill() }

// Stop stops every member still running, the client agent first.
func (c *Cluster) Stop() {
	if c.client != nil {
		c.client.Stop()
	}
	for _, s := range c.servers {
		s.Stop()
	}
}

// serverAddr is the server's raft address.
func (a *Agent) serverAddr() string { return "127.0.0.1:" + strconv.Itoa(a.ports["server"]) }

// leader returns the leader's raft address as the agent sees it, or "".
func (a *Agent) leader() string {
	if a.cmd == nil {
		return ""
	}
	var addr string
	if getJSON(a.HTTPAddr(), "/v1/status/leader", &addr) != nil {
		return ""
	}
	return addr
}

// httpClient keeps no connection open: nothing is left behind for a test's
// goroutine leak check.
var httpClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func getJSON(addr, path string, v any) error {
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status + ": " + string(b))
	}
	return json.Unmarshal(b, v)
}
