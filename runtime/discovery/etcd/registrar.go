package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/clock"
)

// ErrDeregistered is the status of a Registrar after Deregister, and the
// error of a Register after it: a deregistered Registrar does not start
// again.
var ErrDeregistered = errors.New("etcd: deregistered")

// NewRegistrar returns a registrar that keeps inst under
// "<Prefix>/<service>/<instance ID>" with a lease of c.TTL, in the etcd of
// c.Endpoints with c's TLS settings (see the package doc). A non-empty
// registry replaces c.Endpoints. The key is the one a target of c for the
// service lists: the prefix is checked the same way.
func (c Config) NewRegistrar(inst discovery.Instance, registry string) (discovery.Registrar, error) {
	ttl := c.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < MinTTL {
		return nil, fmt.Errorf("etcd: lease TTL %v is less than %v", ttl, MinTTL)
	}
	if inst.ID == "" {
		return nil, errors.New("etcd: instance has no ID")
	}
	t, err := c.target(inst.Service, registry)
	if err != nil {
		return nil, err
	}
	r := &Registrar{
		endpoints: t.endpoints,
		sec:       t.sec,
		key:       t.prefix + "/" + inst.ID,
		inst:      inst,
		plain:     c.PlainValue,
		ttl:       ttl,
	}
	r.Init((*registryCalls)(r), "etcd", r.key, logger, ErrDeregistered)
	return r, nil
}

// Registrar keeps one instance's key in etcd. When the lease is lost (it
// expired during a partition, etcd restarted, the keep-alive stream closed)
// it grants a new lease and puts the key again, under jittered backoff and
// without a retry cap, until Deregister.
//
// The key is only ever deleted while it holds the Registrar's own lease: a
// newer instance that took over the same key (the same instance ID, as in a
// blue/green deployment) keeps it when the old one deregisters.
type Registrar struct {
	discovery.Lifecycle

	endpoints []string
	sec       security
	key       string
	inst      discovery.Instance // its value, with the registration time of each attempt
	plain     bool               // the value is the address alone
	ttl       time.Duration

	mu           sync.Mutex
	client       *clientv3.Client // guarded by mu
	clientCancel func()           // guarded by mu; ends client's context
	hs           *handshakes      // guarded by mu; the client's failed TLS handshakes
	lease        clientv3.LeaseID // guarded by mu; the last lease granted, 0 when none
}

// registryCalls is the etcd side of a Registrar, which its Lifecycle runs:
// Register and Deregister are the Lifecycle's, these are the calls to
// etcd.
type registryCalls Registrar

// Key is the instance's key.
func (r *Registrar) Key() string { return r.key }

// Register makes one attempt to grant a lease and put the key with it.
func (g *registryCalls) Register(ctx context.Context) error {
	_, err := (*Registrar)(g).register(ctx)
	return err
}

// Keep keeps the lease of the first attempt alive, and registers again
// whenever it is lost.
func (g *registryCalls) Keep(ctx context.Context, first error) {
	r := (*Registrar)(g)
	var lease clientv3.LeaseID
	if first == nil {
		r.mu.Lock()
		lease = r.lease
		r.mu.Unlock()
	}
	r.keep(ctx, lease)
}

// getClient returns the client, making it if there is none yet; making it
// ends with ctx. Only Register's first attempt and then the keeper call it,
// one after the other.
func (r *Registrar) getClient(ctx context.Context) (*clientv3.Client, error) {
	r.mu.Lock()
	c := r.client
	r.mu.Unlock()
	if c != nil {
		return c, nil
	}
	// The client outlives ctx: it is closed by Deregister, after its
	// requests. Only the connection being made (a token fetched with
	// ETCD_USERNAME) ends with ctx.
	cctx, ccancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, ccancel)
	c, hs, err := newClient(cctx, r.endpoints, r.sec)
	if !stop() {
		// ctx ended while connecting: c, if any, is cancelled.
		if c != nil {
			c.Close()
		}
		ccancel()
		return nil, fmt.Errorf("etcd: client for %s: %w", r.key, context.Cause(ctx))
	}
	if err != nil {
		ccancel()
		return nil, err
	}
	r.mu.Lock()
	r.client, r.clientCancel, r.hs = c, ccancel, hs
	r.mu.Unlock()
	return c, nil
}

// register grants a lease and puts the key with it.
func (r *Registrar) register(ctx context.Context) (clientv3.LeaseID, error) {
	c, err := r.getClient(ctx)
	if err != nil {
		r.Report(err)
		return 0, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	g, err := c.Grant(ctx, int64(r.ttl/time.Second))
	if err != nil {
		r.mu.Lock()
		hs := r.hs
		r.mu.Unlock()
		err = fmt.Errorf("etcd: grant lease for %s: %w", r.key, hs.explain(err))
		r.Report(err)
		return 0, err
	}
	// Remembered before the put: if the put fails but was applied, or
	// the revoke below fails, Deregister still deletes the key and
	// revokes this lease.
	r.mu.Lock()
	r.lease = g.ID
	r.mu.Unlock()
	if _, err := c.Put(ctx, r.key, r.value(), clientv3.WithLease(g.ID)); err != nil {
		err = fmt.Errorf("etcd: put %s: %w", r.key, err)
		r.Report(err)
		// Within ctx still (Register returns within its caller's
		// context): if this revoke fails too, Deregister revokes the
		// lease, or it expires.
		if _, rerr := c.Revoke(ctx, g.ID); rerr == nil || errors.Is(rerr, rpctypes.ErrLeaseNotFound) {
			r.mu.Lock()
			if r.lease == g.ID {
				r.lease = 0
			}
			r.mu.Unlock()
		}
		return 0, err
	}
	r.Report(nil)
	return g.ID, nil
}

// value is the key's value for an attempt: the instance, with the
// Lifecycle's registration time unless the instance came with one.
func (r *Registrar) value() string {
	inst := r.inst
	if inst.Metadata.RegisteredAt.IsZero() {
		inst.Metadata.RegisteredAt = r.RegisteredAt()
	}
	return encodeValue(inst, r.plain)
}

// keep keeps the lease alive, draining its responses, and registers again
// whenever the lease is lost, until ctx ends.
func (r *Registrar) keep(ctx context.Context, lease clientv3.LeaseID) {
	for failures := 0; ; {
		if ctx.Err() != nil {
			return
		}
		if lease == 0 {
			var err error
			if lease, err = r.register(ctx); err != nil {
				if !clock.Sleep(ctx, clock.Real, backoff(failures)) {
					return
				}
				failures++
				continue
			}
		}
		r.mu.Lock()
		c := r.client
		r.mu.Unlock()
		ch, err := c.KeepAlive(ctx, lease)
		if err == nil {
			failures = 0
			for range ch {
				// Drain the responses; the channel closes when the lease
				// is lost or ctx ends.
			}
			err = errors.New("lease lost")
		}
		if ctx.Err() != nil {
			return
		}
		r.Report(fmt.Errorf("etcd: keep-alive of %s: %w", r.key, err))
		lease = 0
		if !clock.Sleep(ctx, clock.Real, backoff(failures)) {
			return
		}
		failures++
	}
}

// Deregister deletes the key if it still holds the Registrar's lease, and
// revokes the lease, within ctx (each request also within
// RequestTimeout), then closes the client. Registrar.Deregister, the
// Lifecycle's, stops keeping the instance first.
func (g *registryCalls) Deregister(ctx context.Context, _ bool) error {
	r := (*Registrar)(g)
	r.mu.Lock()
	c, ccancel, lease := r.client, r.clientCancel, r.lease
	r.client, r.clientCancel, r.lease = nil, nil, 0
	r.mu.Unlock()
	if c == nil {
		return nil
	}
	defer ccancel()
	defer c.Close()
	if lease == 0 {
		return nil // no key of ours
	}
	dctx, cancel := withTimeout(ctx)
	defer cancel()
	var errs []error
	// Delete the key only while it holds our lease: an instance with the
	// same ID may have put it since, with a lease of its own.
	_, err := c.Txn(dctx).
		If(clientv3.Compare(clientv3.LeaseValue(r.key), "=", lease)).
		Then(clientv3.OpDelete(r.key)).
		Commit()
	if err != nil {
		errs = append(errs, fmt.Errorf("etcd: delete %s: %w", r.key, err))
	}
	// Revoking deletes whatever keys hold the lease, so the key goes even
	// if the delete above failed. A lease that expired already is fine:
	// the key went with it.
	if _, err := c.Revoke(dctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		errs = append(errs, fmt.Errorf("etcd: revoke lease of %s: %w", r.key, err))
	}
	return errors.Join(errs...)
}
