package kubernetes_test

import (
	"fmt"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/kubernetes"
)

// The target of a Service's port named "grpc" in namespace prod.
func ExampleConfig_Target() {
	t, err := kubernetes.Config{Namespace: "prod", Port: "grpc"}.Target("greeter", "")
	fmt.Println(t, err)
	// Output: kubernetes:///greeter.prod:grpc <nil>
}
