// Package hashspread measures how a consistent-hashing scheme spreads
// keys, for the tests of lb_consistent_hash and the benchmarks that
// compare it with grpc-go's ring_hash.
package hashspread

// Figures takes the backend of each key (by key index) over n backends
// (base), over those n and one more (grown), and over the n without the
// backend gone (shrunk). It returns the busiest backend's load over the
// mean, and the keys that moved when one backend was added and when gone
// was removed, as multiples of the least that must move: the new
// backend's share, 1/(n+1), and gone's keys.
func Figures(n int, base, grown, shrunk []string, gone string) (maxMean, added, removed float64) {
	load := map[string]int{}
	for _, b := range base {
		load[b]++
	}
	most := 0
	for _, l := range load {
		most = max(most, l)
	}
	keys := float64(len(base))
	maxMean = float64(most) / (keys / float64(n))
	added = float64(moved(base, grown)) / (keys / float64(n+1))
	removed = float64(moved(base, shrunk)) / float64(load[gone])
	return maxMean, added, removed
}

// moved counts the keys whose backend differs between a and b.
func moved(a, b []string) int {
	m := 0
	for k := range a {
		if a[k] != b[k] {
			m++
		}
	}
	return m
}
