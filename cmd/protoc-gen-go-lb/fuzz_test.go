package main

import (
	"go/parser"
	"go/token"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/pluginpb"

	lbpb "github.com/protoc-gen-go-lb/protoc-gen-go-lb/proto/lb"
)

// FuzzOptions runs the plugin on testdata/static.proto with the fuzzer's
// (lb.service) and (lb.method) options, as wire bytes: it never panics,
// and when it accepts them every file it writes parses as Go (a file that
// does not would be broken output; the compiled goldens check the rest).
func FuzzOptions(f *testing.F) {
	base := request(f, "static.proto", "")
	seed := func(s *lbpb.ServiceRules, m *lbpb.MethodRules) {
		sb, _ := proto.Marshal(s)
		mb, _ := proto.Marshal(m)
		f.Add(sb, mb)
	}
	static := &lbpb.Discovery{Backend: &lbpb.Discovery_Static{Static: &lbpb.Static{Addresses: []string{"10.0.0.1:1"}}}}
	seed(&lbpb.ServiceRules{Discovery: static}, &lbpb.MethodRules{})
	seed(&lbpb.ServiceRules{Discovery: static, Policy: lbpb.Policy_CONSISTENT_HASH, PoolSize: 4}, &lbpb.MethodRules{HashKey: "id", WaitForReady: true})
	seed(&lbpb.ServiceRules{Name: "bad name", Policy: 99}, &lbpb.MethodRules{Hedging: &lbpb.Hedging{MaxAttempts: 9}})
	seed(&lbpb.ServiceRules{Discovery: static, Policy: lbpb.Policy_P2C_EWMA,
		OutlierEjection: &lbpb.OutlierEjection{
			DisableConsecutiveFailures: true,
			FailurePercentage:          &lbpb.FailurePercentage{Threshold: 30},
			Interval:                   durationpb.New(5 * time.Second),
			FailureCodes:               []string{"INTERNAL", "UNAVAILABLE"},
		},
		SlowStart: &lbpb.SlowStart{Window: durationpb.New(time.Minute), Aggression: 2, MinWeightPercent: 5},
	}, &lbpb.MethodRules{})
	seed(&lbpb.ServiceRules{Discovery: static, Policy: lbpb.Policy_RING_HASH,
		OutlierEjection: &lbpb.OutlierEjection{ConsecutiveFailures: 1 << 31, FailureCodes: []string{"OK"}},
		SlowStart:       &lbpb.SlowStart{Aggression: -1},
	}, &lbpb.MethodRules{})
	f.Fuzz(func(t *testing.T, service, method []byte) {
		srules, mrules := &lbpb.ServiceRules{}, &lbpb.MethodRules{}
		if proto.Unmarshal(service, srules) != nil || proto.Unmarshal(method, mrules) != nil {
			return
		}
		req := proto.Clone(base).(*pluginpb.CodeGeneratorRequest)
		for _, fd := range req.GetProtoFile() {
			if fd.GetName() != "static.proto" {
				continue
			}
			for _, s := range fd.GetService() {
				if s.Options == nil {
					s.Options = &descriptorpb.ServiceOptions{}
				}
				proto.SetExtension(s.Options, lbpb.E_Service, srules)
				for _, m := range s.GetMethod() {
					if m.Options == nil {
						m.Options = &descriptorpb.MethodOptions{}
					}
					proto.SetExtension(m.Options, lbpb.E_Method, mrules)
				}
			}
		}
		resp := run(t, req)
		if resp.Error != nil {
			return
		}
		for _, file := range resp.GetFile() {
			if _, err := parser.ParseFile(token.NewFileSet(), file.GetName(), file.GetContent(), 0); err != nil {
				t.Fatalf("options %v / %v: %s does not parse: %v", srules, mrules, file.GetName(), err)
			}
		}
	})
}
