// Package bench compares this module's balancers with grpc-go's, go-zero's
// and kratos's: the cost of a pick (BenchmarkPick, each balancer built alone
// over a fake channel, ours also under lb_outlier and lb_locality), the
// latency of calls when one of ten backends is slow (BenchmarkTail, real
// gRPC on loopback at a fixed arrival rate, with a static list of backends
// or, with -tail.churn, one joining and leaving), the calls that fail when
// one of ten fails calls while its health check says SERVING (BenchmarkGray,
// the same setup, with grpc-go's A50 outlier detection among the peers),
// the balance and churn of subsets for 300 clients of 300 instances
// (BenchmarkSubset, no sockets), and the share of calls that leave the
// client's zone with zone-aware routing and without (BenchmarkCrossZone,
// over the fake channel).
//
// It is a module of its own so that users of the main module never inherit
// go-zero or kratos. Run it with `make bench` at the repository root, which
// writes docs/bench; by hand:
//
//	cd bench
//	go test -run '^$' -bench '^BenchmarkPick$' -benchmem -count 6
//	go test -run '^$' -bench '^BenchmarkTail$' -benchtime 1x -tail.rounds 3 -tail.duration 40s -tail.out ../docs/bench/tail
//	go test -run '^$' -bench '^BenchmarkGray$' -benchtime 1x -gray.duration 60s -gray.out ../docs/bench/gray
//	go test -run '^$' -bench '^BenchmarkSubset$' -benchtime 1x -subset.out ../docs/bench/subset.csv
//	go test -run '^$' -bench '^BenchmarkCrossZone$' -benchtime 1x
//
// docs/bench/README.md explains the numbers.
package bench
