package consul_test

import (
	"fmt"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/consul"
)

// The target that Consul resolver tutorials use, with a tag and a
// datacenter.
func ExampleConfig_Target() {
	t, err := consul.Config{Address: "127.0.0.1:8500", Tags: []string{"v2"}, Datacenter: "dc1"}.Target("helloworld", "")
	fmt.Println(t, err)
	// Output: consul://127.0.0.1:8500/helloworld?dc=dc1&tag=v2 <nil>
}
