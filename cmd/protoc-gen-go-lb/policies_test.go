package main

import (
	"errors"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/compiler/protogen"

	lbpb "github.com/protoc-gen-go-lb/protoc-gen-go-lb/proto/lb"
)

// TestEveryPolicyHasOneRow: each (lb.service).policy value has one row of
// the policy table, whose params, if any, name a field of the
// policy_params oneof.
func TestEveryPolicyHasOneRow(t *testing.T) {
	values := lbpb.Policy(0).Descriptor().Values()
	for i := range values.Len() {
		p := lbpb.Policy(values.Get(i).Number())
		rows := 0
		for _, row := range policies {
			if row.enum == p {
				rows++
			}
		}
		if want := map[bool]int{true: 0, false: 1}[p == lbpb.Policy_POLICY_UNSPECIFIED]; rows != want {
			t.Errorf("%s has %d rows, want %d", p, rows, want)
		}
	}
	oneof := (&lbpb.ServiceRules{}).ProtoReflect().Descriptor().Oneofs().ByName("policy_params")
	for _, row := range policies {
		if row.params == "" {
			continue
		}
		if f := oneof.Fields().ByName(row.params); f == nil {
			t.Errorf("%s: params %q is not a field of (lb.service)'s policy_params", row.enum, row.params)
		}
	}
}

// TestPolicyFields: each policy's config is the Config of its package,
// which checks its settings (Validate) if it has any, and the fields the
// generated literal names are fields of that Config, of its type (a
// GoIdent names a constant of a named type).
func TestPolicyFields(t *testing.T) {
	for _, row := range policies {
		if row.config == nil {
			continue
		}
		c := row.config(&lbpb.ServiceRules{}, func(string, ...any) {})
		typ := reflect.TypeOf(c.config)
		if got, want := typ.PkgPath()+"."+typ.Name(), balancerPackages+row.pkg+".Config"; got != want {
			t.Errorf("%s: config is a %s, want a %s", row.enum, got, want)
		}
		if _, ok := c.config.(interface{ Validate() error }); len(c.fields) > 0 && !ok {
			t.Errorf("%s: %s has settings and no Validate", row.enum, typ)
		}
		for _, f := range c.fields {
			sf, ok := typ.FieldByName(f.Name)
			switch {
			case !ok:
				t.Errorf("%s: %s has no field %s", row.enum, typ, f.Name)
			case reflect.TypeOf(f.Value) == reflect.TypeFor[protogen.GoIdent]():
				if sf.Type.PkgPath() == "" {
					t.Errorf("%s: %s.%s is a %s, which no constant identifier names", row.enum, typ, f.Name, sf.Type)
				}
			case reflect.TypeOf(f.Value) != sf.Type:
				t.Errorf("%s: %s.%s is a %s, the literal gives a %T", row.enum, typ, f.Name, sf.Type, f.Value)
			}
		}
	}
}

func TestRuntimeErrors(t *testing.T) {
	names := map[string]string{"minRingSize": "min_ring_size", "maxRingSize": "max_ring_size", "min ring size": "min_ring_size", "ring size": "ring_size"}
	for _, tc := range []struct {
		err  error
		want []string
	}{
		{nil, nil},
		{errors.New("ring_hash_experimental: minRingSize 5000 is more than maxRingSize 100"),
			[]string{"(lb.service).ring_hash.min_ring_size 5000 is more than max_ring_size 100"}},
		{errors.New("ring_hash_experimental: the ring is odd"),
			[]string{"(lb.service).ring_hash: the ring is odd"}},
		{errors.New("ring_hash_experimental: odd maxRingSize"),
			[]string{"(lb.service).ring_hash: odd max_ring_size"}},
		{errors.Join(errors.New("ring_hash_experimental: minRingSize 0 is bad"), errors.New("ring_hash_experimental: maxRingSize 0 is bad")),
			[]string{"(lb.service).ring_hash.min_ring_size 0 is bad", "(lb.service).ring_hash.max_ring_size 0 is bad"}},
		// Settings named in words, the longest name first; a name within
		// a word is left alone.
		{errors.New("ring_hash_experimental: min ring size 5 is less than ring size 6 (min ring sizes)"),
			[]string{"(lb.service).ring_hash.min_ring_size 5 is less than ring_size 6 (min ring sizes)"}},
	} {
		var got []string
		runtimeErrors(tc.err, "ring_hash_experimental", "(lb.service).ring_hash", names, func(format string, args ...any) {
			if format != "%s" || len(args) != 1 {
				t.Fatalf("bad(%q, %v): want one message", format, args)
			}
			got = append(got, args[0].(string))
		})
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("runtimeErrors(%v) (-want +got):\n%s", tc.err, diff)
		}
	}
}

func TestHashingPolicies(t *testing.T) {
	if got, want := hashingPolicies(), "CONSISTENT_HASH and RING_HASH"; got != want {
		t.Errorf("hashingPolicies() = %q, want %q", got, want)
	}
}
