// Package faultproxy is a TCP proxy that a test can cut and heal, to break
// the path between a client and a server without stopping either, or
// freeze, to make the server look silently dead (a host gone without a
// FIN or RST: the bytes go nowhere).
package faultproxy

import (
	"io"
	"net"
	"sync"
)

// Proxy forwards connections from its address to a target address.
type Proxy struct {
	lis net.Listener
	wg  sync.WaitGroup

	mu       sync.Mutex
	target   string                // guarded by mu
	cut      bool                  // guarded by mu
	frozen   bool                  // guarded by mu
	conns    map[net.Conn]struct{} // guarded by mu
	accepted int                   // guarded by mu; client connections forwarded
	pings    int                   // guarded by mu; HTTP/2 PINGs (not ACKs) from clients
}

// PingsUp returns how many HTTP/2 PING frames (not acknowledgements) the
// proxy has forwarded from clients: keepalive and BDP pings.
func (p *Proxy) PingsUp() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pings
}

// frames reads the HTTP/2 frame headers of one client connection's bytes
// as they pass, counting PINGs into the proxy.
type frames struct {
	p       *Proxy
	preface int     // bytes of the client preface still to skip
	head    [9]byte // the frame header being read
	got     int     // bytes of head read
	skip    int     // payload bytes still to skip
}

func (f *frames) feed(b []byte) {
	for len(b) > 0 {
		switch {
		case f.preface > 0:
			n := min(f.preface, len(b))
			f.preface, b = f.preface-n, b[n:]
		case f.skip > 0:
			n := min(f.skip, len(b))
			f.skip, b = f.skip-n, b[n:]
		default:
			n := copy(f.head[f.got:], b)
			f.got, b = f.got+n, b[n:]
			if f.got < len(f.head) {
				return
			}
			f.got = 0
			f.skip = int(f.head[0])<<16 | int(f.head[1])<<8 | int(f.head[2])
			if typ, flags := f.head[3], f.head[4]; typ == 0x6 && flags&0x1 == 0 {
				f.p.mu.Lock()
				f.p.pings++
				f.p.mu.Unlock()
			}
		}
	}
}

// Accepted returns how many client connections the proxy has forwarded.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// New starts a proxy to target on a free loopback port.
func New(target string) (*Proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, lis: lis, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Cut closes every connection and refuses new ones until Heal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Redirect closes every connection and forwards the next ones to target:
// the server behind the proxy's address is another from now on, as when a
// registry is moved or replaced.
func (p *Proxy) Redirect(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
	for c := range p.conns {
		c.Close()
	}
}

// Heal accepts connections again, and forwards bytes again after Freeze.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.frozen = false, false
}

// Freeze drops every byte in both directions, keeping the connections
// open, until Heal.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
}

func (p *Proxy) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

// dropper writes to w unless the proxy is frozen, when it drops the bytes;
// up, when set, reads the frames going up to the target.
type dropper struct {
	w  net.Conn
	p  *Proxy
	up *frames
}

func (d dropper) Write(b []byte) (int, error) {
	if d.p.isFrozen() {
		return len(b), nil
	}
	n, err := d.w.Write(b)
	if d.up != nil {
		d.up.feed(b[:n])
	}
	return n, err
}

// Close stops the proxy and waits for its goroutines.
func (p *Proxy) Close() {
	p.lis.Close()
	p.Cut()
	p.wg.Wait()
}

// track records c unless the proxy is cut.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		if !p.track(in) {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.accepted++
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(in)
			p.mu.Lock()
			target := p.target
			p.mu.Unlock()
			out, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			if !p.track(out) {
				out.Close()
				return
			}
			defer p.untrack(out)
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				var up *frames
				if dst == out {
					up = &frames{p: p, preface: len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")}
				}
				io.Copy(dropper{w: dst, p: p, up: up}, src)
				dst.Close()
				src.Close()
				done <- struct{}{}
			}
			go pipe(out, in)
			go pipe(in, out)
			<-done
			<-done
		}()
	}
}
