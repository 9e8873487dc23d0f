// Command demo runs an embedded etcd, three greeter servers that register
// themselves in it through the generated helper, and a balanced client that
// finds them there. It prints how the client's calls spread over the
// backends, shuts one server down (NOT_SERVING, deregistered, graceful
// stop) and shows its traffic moving to the others. It ends by itself:
// `make demo`. With -etcd it uses an etcd you run instead.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/greeter"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/helloworld"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/etcdserver"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

const callsPerRound = 300

func main() {
	endpoint := flag.String("etcd", "", "etcd endpoint (default: start an embedded etcd on a free port)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout, *endpoint); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, endpoint string) error {
	if endpoint == "" {
		dir, err := os.MkdirTemp("", "lb-demo-etcd")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		etcd, err := etcdserver.Start(dir, "")
		if err != nil {
			return err
		}
		defer etcd.Stop()
		endpoint = etcd.Endpoint()
		fmt.Fprintf(w, "started an embedded etcd on %s\n", endpoint)
	}

	var servers []*greeter.Instance
	defer func() {
		for _, s := range servers {
			s.Registration.Shutdown(ctx)
		}
	}()
	var addrs []string
	for range 3 {
		s, err := greeter.Start("127.0.0.1:0", greeter.Options{Registry: endpoint})
		if s != nil {
			servers = append(servers, s)
		}
		if err != nil {
			return err
		}
		addrs = append(addrs, s.Addr)
	}
	// Each server goes in etcd once it serves.
	for _, s := range servers {
		if err := s.Registration.WaitRegistered(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "started %d greeter servers, registered in etcd under /services/%s/: %s\n",
		len(addrs), helloworld.GreeterServiceName, strings.Join(addrs, ", "))

	client, err := helloworld.NewGreeterBalancedClient(ctx, lb.WithInsecure(), lb.WithRegistryAddress(endpoint), lb.WithBlock())
	if err != nil {
		return err
	}
	defer client.Close()

	if err := round(ctx, w, client, "all three up"); err != nil {
		return err
	}
	stopped := servers[0]
	servers = servers[1:]
	fmt.Fprintf(w, "shutting down %s (NOT_SERVING, deregistered from etcd, graceful stop)\n", stopped.Addr)
	if err := stopped.Registration.Shutdown(ctx); err != nil {
		return err
	}
	rep := stopped.Registration.LastShutdown()
	fmt.Fprintf(w, "  %d health watcher(s) told NOT_SERVING in %v, drained in %v\n", rep.Watchers, rep.Propagation.Round(time.Microsecond), rep.Drain.Round(time.Microsecond))
	return round(ctx, w, client, "after stopping "+stopped.Addr)
}

// round makes callsPerRound calls and prints the count per backend.
func round(ctx context.Context, w io.Writer, c *helloworld.GreeterBalancedClient, title string) error {
	counts := map[string]int{}
	failed := 0
	for range callsPerRound {
		reply, err := c.SayHello(ctx, &helloworld.HelloRequest{Name: "demo"})
		if err != nil {
			failed++
			continue
		}
		counts[reply.GetBackend()]++
	}
	fmt.Fprintf(w, "%d calls, %s:\n", callsPerRound, title)
	for _, b := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(w, "  %-21s %4d %s\n", b, counts[b], strings.Repeat("#", counts[b]/5))
	}
	fmt.Fprintf(w, "  failed                %4d\n", failed)
	if failed > 0 {
		return fmt.Errorf("%d calls failed", failed)
	}
	return ctx.Err()
}
