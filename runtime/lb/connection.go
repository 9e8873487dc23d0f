package lb

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// MinKeepaliveTime is gRPC's least client ping interval: grpc-go raises
// shorter ones to it.
const MinKeepaliveTime = 10 * time.Second

// DefaultKeepaliveTimeout is how long a ping waits for its answer when
// Connection sets KeepaliveTime only.
const DefaultKeepaliveTimeout = 3 * time.Second

// Connection is how long a service's connections live and how a dead peer
// is noticed, from (lb.service).connection; zero fields are off.
type Connection struct {
	// KeepaliveTime: clients ping after this long without activity (at
	// least MinKeepaliveTime); the server accepts pings every
	// KeepaliveTime/2.
	KeepaliveTime time.Duration
	// KeepaliveTimeout: how long a ping waits; 0 means
	// DefaultKeepaliveTimeout.
	KeepaliveTimeout time.Duration
	// MaxConnectionAge: the server ends each connection after this long
	// (GOAWAY), so that clients reconnect and rebalance.
	MaxConnectionAge time.Duration
	// MaxConnectionAgeGrace: how long calls in flight get after
	// MaxConnectionAge; 0 means until they end.
	MaxConnectionAgeGrace time.Duration
	// MaxConnectionIdle: the server closes a connection without calls for
	// this long.
	MaxConnectionIdle time.Duration
}

// clientParams returns the client's keepalive, or false when it has none.
func (c *Connection) clientParams() (keepalive.ClientParameters, bool) {
	if c == nil || c.KeepaliveTime == 0 {
		return keepalive.ClientParameters{}, false
	}
	timeout := c.KeepaliveTimeout
	if timeout == 0 {
		timeout = DefaultKeepaliveTimeout
	}
	return keepalive.ClientParameters{
		Time:    max(c.KeepaliveTime, MinKeepaliveTime),
		Timeout: timeout,
		// Ping idle connections too: a dead backend is noticed before a
		// call is sent to it.
		PermitWithoutStream: true,
	}, true
}

// ServerOptions returns the grpc.ServerOptions that match svc's
// Connection: keepalive enforcement that accepts its clients' pings (a
// server without it sends them GOAWAY too_many_pings), and the connection
// ages. Pass them to grpc.NewServer; the generated <Svc>ServerOptions()
// returns them. Nil without a Connection.
func ServerOptions(svc *Service) []grpc.ServerOption {
	c := svc.Connection
	if c == nil {
		return nil
	}
	var opts []grpc.ServerOption
	if cp, ok := c.clientParams(); ok {
		opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             cp.Time / 2,
			PermitWithoutStream: true,
		}))
	}
	if c.MaxConnectionAge != 0 || c.MaxConnectionIdle != 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      c.MaxConnectionAge,
			MaxConnectionAgeGrace: c.MaxConnectionAgeGrace,
			MaxConnectionIdle:     c.MaxConnectionIdle,
		}))
	}
	return opts
}
