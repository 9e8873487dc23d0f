// Package interop holds only a test: grpc-go's interop client cases
// (google.golang.org/grpc/interop) run through lb.Dial against three
// interop test servers registered with lb.Register in a real etcd, under
// every policy of the runtime, a pool, retries and hedging.
package interop
