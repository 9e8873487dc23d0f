package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/grpclog"

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
	ctx, cancel := context.WithCancel(context.Background())
	return &Registrar{
		endpoints: t.endpoints,
		sec:       t.sec,
		key:       t.prefix + "/" + inst.ID,
		value:     encodeValue(inst, c.PlainValue),
		ttl:       ttl,
		log:       logger,
		ctx:       ctx,
		cancel:    cancel,
	}, nil
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
	discovery.RegistrationStatus

	endpoints []string
	sec       security
	key       string
	value     string
	ttl       time.Duration
	log       grpclog.DepthLoggerV2 // the package's logger; a test's

	// ctx ends at Deregister. It stops the keeper and ends whatever
	// request, or connection being made, is in flight; the client itself
	// lives on until Deregister's own requests are done.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // Register's first attempt, then the keeper

	mu           sync.Mutex
	started      bool             // guarded by mu: Register was called
	deregistered bool             // guarded by mu: Deregister was called
	client       *clientv3.Client // guarded by mu
	clientCancel func()           // guarded by mu; ends client's context
	hs           *handshakes      // guarded by mu; the client's failed TLS handshakes
	lease        clientv3.LeaseID // guarded by mu; the last lease granted, 0 when none
}

// Key is the instance's key.
func (r *Registrar) Key() string { return r.key }

func (r *Registrar) setStatus(err error) {
	if err != nil && !errors.Is(err, ErrDeregistered) && r.ctx.Err() != nil {
		// A failure that Deregister caused: the status becomes
		// ErrDeregistered instead.
		return
	}
	if !r.SetStatus(err) {
		return
	}
	switch {
	case err == nil:
		r.log.Infof("etcd: registered %s", r.key)
	case errors.Is(err, ErrDeregistered):
		r.log.Infof("etcd: deregistered %s", r.key)
	default:
		r.log.Warningf("etcd: %s not registered: %v", r.key, err)
	}
}

// Register puts the key with a new lease and starts keeping it alive. If
// the first attempt fails, it returns the error and keeps trying in the
// background. A second Register does nothing; a Register after Deregister
// returns ErrDeregistered and starts nothing.
func (r *Registrar) Register(ctx context.Context) error {
	r.mu.Lock()
	if r.deregistered {
		r.mu.Unlock()
		return ErrDeregistered
	}
	if r.started {
		r.mu.Unlock()
		return nil
	}
	r.started = true
	// Under mu, so that Deregister, which sets deregistered under mu
	// before it waits, waits for this too.
	r.wg.Add(1)
	r.mu.Unlock()

	// The first attempt ends with ctx or at Deregister, whichever is
	// first.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.ctx, cancel)
	defer stop()
	lease, err := r.register(ctx)
	go r.keep(lease)
	return err
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
		r.setStatus(err)
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
		r.setStatus(err)
		return 0, err
	}
	// Remembered before the put: if the put fails but was applied, or
	// the revoke below fails, Deregister still deletes the key and
	// revokes this lease.
	r.mu.Lock()
	r.lease = g.ID
	r.mu.Unlock()
	if _, err := c.Put(ctx, r.key, r.value, clientv3.WithLease(g.ID)); err != nil {
		err = fmt.Errorf("etcd: put %s: %w", r.key, err)
		r.setStatus(err)
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
	r.setStatus(nil)
	return g.ID, nil
}

// keep keeps the lease alive, draining its responses, and registers again
// whenever the lease is lost.
func (r *Registrar) keep(lease clientv3.LeaseID) {
	defer r.wg.Done()
	for failures := 0; ; {
		if r.ctx.Err() != nil {
			return
		}
		if lease == 0 {
			var err error
			if lease, err = r.register(r.ctx); err != nil {
				if !clock.Sleep(r.ctx, clock.Real, backoff(failures)) {
					return
				}
				failures++
				continue
			}
		}
		r.mu.Lock()
		c := r.client
		r.mu.Unlock()
		ch, err := c.KeepAlive(r.ctx, lease)
		if err == nil {
			failures = 0
			for range ch {
				// Drain the responses; the channel closes when the lease
				// is lost or r.ctx ends.
			}
			err = errors.New("lease lost")
		}
		if r.ctx.Err() != nil {
			return
		}
		r.setStatus(fmt.Errorf("etcd: keep-alive of %s: %w", r.key, err))
		lease = 0
		if !clock.Sleep(r.ctx, clock.Real, backoff(failures)) {
			return
		}
		failures++
	}
}

// Deregister stops keeping the instance, deletes its key if the key still
// holds the Registrar's lease, and revokes the lease, within ctx (each
// request also within RequestTimeout). It is idempotent: a second call
// returns nil.
func (r *Registrar) Deregister(ctx context.Context) error {
	r.mu.Lock()
	if r.deregistered {
		r.mu.Unlock()
		return nil
	}
	r.deregistered = true
	r.mu.Unlock()
	// Everything in flight ends with r.ctx, a connection being made too,
	// so this wait is short.
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	c, ccancel, lease := r.client, r.clientCancel, r.lease
	r.client, r.clientCancel, r.lease = nil, nil, 0
	r.mu.Unlock()
	r.setStatus(ErrDeregistered)
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
