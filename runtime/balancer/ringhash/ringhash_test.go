package ringhash

import (
	"encoding/json"
	"testing"

	"google.golang.org/grpc/balancer"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		js   string
		want Config
		err  bool
	}{
		{js: ``, want: Config{MinRingSize: DefaultMinRingSize, MaxRingSize: DefaultMaxRingSize}},
		{js: `{"minRingSize":10,"maxRingSize":20}`, want: Config{MinRingSize: 10, MaxRingSize: 20}},
		{js: `{"minRingSize":5000}`, err: true},
		{js: `{"maxRingSize":9000000}`, err: true},
		{js: `{"minRingSize":0}`, err: true},
	} {
		got, err := ParseConfig([]byte(tc.js))
		if tc.err != (err != nil) || (err == nil && *got != tc.want) {
			t.Errorf("ParseConfig(%s) = %+v, %v; want %+v (error %v)", tc.js, got, err, tc.want, tc.err)
		}
	}
}

// TestGRPCAgrees: what Config emits, grpc-go's own ring_hash accepts.
func TestGRPCAgrees(t *testing.T) {
	js, _ := json.Marshal(Config{MinRingSize: 100, MaxRingSize: 200}.BalancerConfig())
	if _, err := balancer.Get(Name).(balancer.ConfigParser).ParseConfig(js); err != nil {
		t.Errorf("grpc-go refuses %s: %v", js, err)
	}
}
