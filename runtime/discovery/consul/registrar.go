package consul

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

// ResyncInterval is how often the registrar checks that the agent still
// knows the instance (an agent restarted in dev mode forgets everything).
const ResyncInterval = 5 * time.Second

// ErrDeregistered is the status of a Registrar after Deregister, and the
// error of a Register after it: a deregistered Registrar does not start
// again.
var ErrDeregistered = errors.New("consul: deregistered")

// NewRegistrar returns a registrar of inst with the agent at c.Address, or
// at registry when that is not empty. The ACL token comes from
// CONSUL_HTTP_TOKEN. The instance gets a gRPC health check, over TLS with
// c.GRPCUseTLS.
func (c Config) NewRegistrar(inst discovery.Instance, registry string) (discovery.Registrar, error) {
	if inst.ID == "" {
		return nil, errors.New("consul: instance has no ID")
	}
	if !c.GRPCUseTLS && (c.TLSServerName != "" || c.TLSSkipVerify) {
		return nil, errors.New("consul: TLSServerName and TLSSkipVerify are settings of a TLS check: set GRPCUseTLS too")
	}
	host, portStr, err := net.SplitHostPort(inst.Address)
	if err != nil {
		return nil, fmt.Errorf("consul: instance address %q: %w", inst.Address, err)
	}
	port, _ := strconv.Atoi(portStr)
	// The same checks as the resolver's: an instance no client could find
	// is not registered.
	t, err := c.target(inst.Service, registry)
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	addr := t.Address
	client, cfg, err := newClient(addr, "")
	if err != nil {
		return nil, err
	}
	interval := c.CheckInterval
	if interval == 0 {
		interval = DefaultCheckInterval
	}
	deregister := c.DeregisterCriticalAfter
	if deregister == 0 {
		deregister = DefaultDeregisterCriticalAfter
	}
	reg := &api.AgentServiceRegistration{
		ID:      inst.ID,
		Name:    inst.Service,
		Tags:    c.Tags,
		Address: host,
		Port:    port,
		Meta:    meta(inst.Metadata),
	}
	// Each attempt writes the Lifecycle's registration time, unless the
	// instance came with one.
	stampMeta := inst.Metadata.RegisteredAt.IsZero()
	if inst.Metadata.Weight > 0 {
		reg.Weights = &api.AgentWeights{Passing: int(inst.Metadata.Weight), Warning: 1}
	}
	reg.Checks = append(reg.Checks, &api.AgentServiceCheck{
		CheckID:                        inst.ID + ":grpc",
		Name:                           "gRPC health of " + inst.HealthService,
		GRPC:                           inst.Address + "/" + inst.HealthService,
		Interval:                       interval.String(),
		Timeout:                        checkTimeout(interval).String(),
		DeregisterCriticalServiceAfter: deregister.String(),
		GRPCUseTLS:                     c.GRPCUseTLS,
		TLSServerName:                  c.TLSServerName,
		TLSSkipVerify:                  c.TLSSkipVerify,
	})
	r := &Registrar{client: client, transport: cfg.Transport, reg: reg, ttl: c.TTL, md: inst.Metadata, stampMeta: stampMeta}
	if c.TTL > 0 {
		r.ttlCheck = inst.ID + ":ttl"
		reg.Checks = append(reg.Checks, &api.AgentServiceCheck{
			CheckID:                        r.ttlCheck,
			Name:                           "heartbeat of " + inst.ID,
			TTL:                            c.TTL.String(),
			Status:                         api.HealthPassing,
			DeregisterCriticalServiceAfter: deregister.String(),
		})
	}
	r.Init((*registryCalls)(r), "consul", reg.ID, logger, ErrDeregistered)
	return r, nil
}

func meta(md discovery.Metadata) map[string]string {
	if md.IsZero() {
		return nil
	}
	m := map[string]string{}
	for k, v := range md.Custom {
		m[k] = v
	}
	if md.Weight != 0 {
		m["weight"] = strconv.FormatUint(uint64(md.Weight), 10)
	}
	if md.Zone != "" {
		m["zone"] = md.Zone
	}
	if md.Region != "" {
		m["region"] = md.Region
	}
	if md.Version != "" {
		m["version"] = md.Version
	}
	if !md.RegisteredAt.IsZero() {
		m[registeredAtKey] = discovery.FormatTime(md.RegisteredAt)
	}
	return m
}

// registeredAtKey is the service Meta key of Metadata.RegisteredAt.
const registeredAtKey = "registered_at"

// Registrar keeps one instance registered with a Consul agent: it registers
// it again whenever the agent no longer knows it, and passes its TTL check
// if it has one.
type Registrar struct {
	discovery.Lifecycle

	client    *api.Client
	transport *http.Transport
	reg       *api.AgentServiceRegistration
	ttl       time.Duration
	ttlCheck  string
	md        discovery.Metadata // the instance's, for each attempt's Meta
	stampMeta bool               // md has no registration time: each attempt adds the Lifecycle's
}

// registryCalls is the Consul side of a Registrar, which its Lifecycle
// runs: Register and Deregister are the Lifecycle's, these are the calls
// to the agent.
type registryCalls Registrar

// ID is the instance's service ID.
func (r *Registrar) ID() string { return r.reg.ID }

// Register makes one attempt to register the instance with the agent.
func (g *registryCalls) Register(ctx context.Context) error { return (*Registrar)(g).register(ctx) }

// Keep keeps the instance registered until ctx ends.
func (g *registryCalls) Keep(ctx context.Context, _ error) { (*Registrar)(g).keep(ctx) }

func (r *Registrar) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	reg := r.reg
	if r.stampMeta {
		md := r.md
		md.RegisteredAt = r.RegisteredAt()
		c := *r.reg
		c.Meta = meta(md)
		reg = &c
	}
	err := r.client.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx))
	if err != nil {
		err = fmt.Errorf("consul: register %s: %w", r.reg.ID, err)
	}
	r.Report(err)
	return err
}

// keep checks every ResyncInterval (and heartbeats every TTL/3) that the
// agent knows the instance, and registers it again when it does not,
// until ctx ends.
func (r *Registrar) keep(ctx context.Context) {
	every := ResyncInterval
	if r.ttl > 0 {
		every = min(every, r.ttl/3)
	}
	for failures := 0; ; {
		wait := every
		if r.Status() != nil {
			// A local agent is cheap to ask: come back within a second
			// of it.
			wait = min(backoff(failures), time.Second)
		}
		if !clock.Sleep(ctx, clock.Real, wait) {
			return
		}
		if err := r.check(ctx); err != nil {
			failures++
			if ctx.Err() != nil {
				return
			}
			if err := r.register(ctx); err != nil {
				continue
			}
		}
		failures = 0
	}
}

// check reports whether the agent still has the instance, passing its TTL
// check on the way.
func (r *Registrar) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(ctx)
	if r.ttlCheck != "" {
		return r.client.Agent().UpdateTTLOpts(r.ttlCheck, "", api.HealthPassing, q)
	}
	_, _, err := r.client.Agent().Service(r.reg.ID, q)
	return err
}

// Deregister deregisters the instance, within ctx, if it was registered,
// and closes the client's idle connections. Registrar.Deregister, the
// Lifecycle's, stops keeping the instance first.
func (g *registryCalls) Deregister(ctx context.Context, registered bool) error {
	r := (*Registrar)(g)
	defer r.transport.CloseIdleConnections()
	if !registered {
		return nil // nothing registered
	}
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	if err := r.client.Agent().ServiceDeregisterOpts(r.reg.ID, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: deregister %s: %w", r.reg.ID, err)
	}
	return nil
}

// checkTimeout is the timeout of the gRPC check: its interval, but at least
// MinCheckTimeout (a check that times out under a passing load spike
// takes a healthy instance out of every client) and at most 5 s.
func checkTimeout(interval time.Duration) time.Duration {
	return min(max(interval, MinCheckTimeout), 5*time.Second)
}

// MinCheckTimeout is the least timeout of the registered gRPC check.
const MinCheckTimeout = time.Second
