// Command demo runs three greeter servers and a balanced client on
// loopback, prints how the client's calls spread over the backends, stops
// one server and shows its traffic moving to the others. It ends by
// itself: `make demo`.
package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/greeter"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/example/helloworld"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

const callsPerRound = 300

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer) error {
	var servers []*greeter.Instance
	defer func() {
		for _, s := range servers {
			s.Server.Stop()
		}
	}()
	var addrs []string
	for range 3 {
		s, err := greeter.Start("127.0.0.1:0")
		if err != nil {
			return err
		}
		servers = append(servers, s)
		addrs = append(addrs, s.Addr)
	}
	fmt.Fprintf(w, "started %d greeter servers: %s\n", len(addrs), strings.Join(addrs, ", "))

	// The proto declares static discovery on fixed ports; the servers got
	// free ones, so the demo passes them as the registry's address list.
	client, err := helloworld.NewGreeterBalancedClient(ctx, lb.WithInsecure(),
		lb.WithRegistryAddress(strings.Join(addrs, ",")), lb.WithBlock())
	if err != nil {
		return err
	}
	defer client.Close()

	if err := round(ctx, w, client, "all three up"); err != nil {
		return err
	}
	stopped := servers[0]
	fmt.Fprintf(w, "shutting down %s (NOT_SERVING, then graceful stop)\n", stopped.Addr)
	if err := stopped.Registration.Shutdown(ctx); err != nil {
		return err
	}
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
