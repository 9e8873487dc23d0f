package dns_test

import (
	"fmt"
	"time"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/dns"
)

// SRV records of Consul's DNS interface, looked up every 10 s.
func ExampleConfig_Target() {
	t, err := dns.Config{Host: "greeter.service.consul", SRV: true, Server: "127.0.0.1:8600", Refresh: 10 * time.Second}.Target("greeter", "")
	fmt.Println(t, err)
	// Output: lbdns://127.0.0.1:8600/greeter.service.consul?record=srv&refresh=10s <nil>
}
