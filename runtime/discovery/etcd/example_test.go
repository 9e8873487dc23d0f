package etcd_test

import (
	"fmt"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/etcd"
)

// The target of a service's instances in etcd, as go-kit's sd/etcdv3
// registrar lays them out: one key per instance under the prefix.
func ExampleConfig_Target() {
	t, err := etcd.Config{Endpoints: []string{"10.0.0.5:2379", "10.0.0.6:2379"}}.Target("greeter", "")
	fmt.Println(t, err)
	// Output: etcd://10.0.0.5:2379,10.0.0.6:2379/services/greeter <nil>
}
