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
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/internal/retry"
)

// NewRegistrar returns a registrar that keeps inst under
// "<Prefix>/<service>/<instance ID>" with a lease of c.TTL. A non-empty
// registry replaces c.Endpoints.
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
	var eps []string
	for _, ep := range c.endpoints(registry) {
		addr, err := discovery.ParseAddress(ep)
		if err != nil {
			return nil, fmt.Errorf("etcd: endpoint: %w", err)
		}
		eps = append(eps, addr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Registrar{
		endpoints: eps,
		key:       c.servicePrefix(inst.Service) + "/" + inst.ID,
		value:     encodeValue(inst, c.PlainValue),
		ttl:       ttl,
		ctx:       ctx,
		cancel:    cancel,
	}, nil
}

// Registrar keeps one instance's key in etcd. When the lease is lost (it
// expired during a partition, etcd restarted, the keep-alive stream closed)
// it grants a new lease and puts the key again, under jittered backoff and
// without a retry cap, until Deregister.
type Registrar struct {
	discovery.RegistrationStatus

	endpoints []string
	key       string
	value     string
	ttl       time.Duration

	ctx    context.Context // ends at Deregister
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once // starts the keeper

	mu     sync.Mutex
	client *clientv3.Client // guarded by mu
	lease  clientv3.LeaseID // guarded by mu; 0 when none is held
}

// Key is the instance's key.
func (r *Registrar) Key() string { return r.key }

func (r *Registrar) setStatus(err error) {
	if !r.SetStatus(err) {
		return
	}
	if err == nil {
		logger.Infof("etcd: registered %s", r.key)
	} else {
		logger.Warningf("etcd: %s not registered: %v", r.key, err)
	}
}

// Register puts the key with a new lease and starts keeping it alive. If
// the first attempt fails, it returns the error and keeps trying in the
// background.
func (r *Registrar) Register(ctx context.Context) error {
	var err error
	r.once.Do(func() {
		var lease clientv3.LeaseID
		lease, err = r.register(ctx)
		r.wg.Add(1)
		go r.keep(lease)
	})
	return err
}

func (r *Registrar) getClient() (*clientv3.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client == nil {
		c, err := newClient(r.ctx, r.endpoints, securityFromEnv())
		if err != nil {
			return nil, err
		}
		r.client = c
	}
	return r.client, nil
}

// register grants a lease and puts the key with it.
func (r *Registrar) register(ctx context.Context) (clientv3.LeaseID, error) {
	c, err := r.getClient()
	if err != nil {
		r.setStatus(err)
		return 0, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	g, err := c.Grant(ctx, int64(r.ttl/time.Second))
	if err != nil {
		err = fmt.Errorf("etcd: grant lease for %s: %w", r.key, err)
		r.setStatus(err)
		return 0, err
	}
	if _, err := c.Put(ctx, r.key, r.value, clientv3.WithLease(g.ID)); err != nil {
		err = fmt.Errorf("etcd: put %s: %w", r.key, err)
		r.setStatus(err)
		// The lease expires by itself if this revoke fails too.
		rctx, rcancel := withTimeout(r.ctx)
		c.Revoke(rctx, g.ID)
		rcancel()
		return 0, err
	}
	r.mu.Lock()
	r.lease = g.ID
	r.mu.Unlock()
	r.setStatus(nil)
	return g.ID, nil
}

// keep keeps the lease alive, draining its responses, and registers again
// whenever the lease is lost.
func (r *Registrar) keep(lease clientv3.LeaseID) {
	defer r.wg.Done()
	for failures := 0; ; {
		if lease == 0 {
			var err error
			if lease, err = r.register(r.ctx); err != nil {
				if !retry.Sleep(r.ctx, backoff(failures)) {
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
		if !retry.Sleep(r.ctx, backoff(failures)) {
			return
		}
		failures++
	}
}

// Deregister stops keeping the instance, deletes its key and revokes its
// lease, within ctx (each request also within RequestTimeout).
func (r *Registrar) Deregister(ctx context.Context) error {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	c, lease := r.client, r.lease
	r.client, r.lease = nil, 0
	r.mu.Unlock()
	r.setStatus(errors.New("etcd: deregistered"))
	if c == nil {
		return nil
	}
	defer c.Close()
	dctx, cancel := withTimeout(ctx)
	defer cancel()
	var errs []error
	if _, err := c.Delete(dctx, r.key); err != nil {
		errs = append(errs, fmt.Errorf("etcd: delete %s: %w", r.key, err))
	}
	if lease != 0 {
		// A lease that expired already is fine: the key went with it.
		if _, err := c.Revoke(dctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			errs = append(errs, fmt.Errorf("etcd: revoke lease of %s: %w", r.key, err))
		}
	}
	return errors.Join(errs...)
}
