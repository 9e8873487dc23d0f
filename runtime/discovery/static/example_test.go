package static_test

import (
	"fmt"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
)

// A Config's target, which plain grpc.NewClient resolves too once the
// package is imported.
func ExampleConfig_Target() {
	t, err := static.Config{Addresses: []string{"10.0.0.1:50051", "[::1]:50051"}}.Target("greeter", "")
	fmt.Println(t, err)
	// Output: static:///10.0.0.1:50051,[::1]:50051 <nil>
}
