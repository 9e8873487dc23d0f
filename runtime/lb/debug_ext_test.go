package lb_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/secrettest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/testbackend"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery/static"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/lb"
)

var debugSecret = secrettest.Secret("debug-page-sentinel-7f3a")

// debugJSON is the part of the page's JSON the tests read.
type debugJSON struct {
	Watches []struct {
		Scheme    string `json:"scheme"`
		Target    string `json:"target"`
		Instances []struct {
			Address string `json:"address"`
		} `json:"instances"`
		ConfirmedSeconds float64 `json:"confirmedSeconds"`
	} `json:"watches"`
	Clients       []debugClientJSON `json:"clients"`
	Registrations []struct {
		Service  string          `json:"service"`
		Status   string          `json:"status"`
		Shutdown json.RawMessage `json:"shutdown"`
	} `json:"registrations"`
}

type debugClientJSON struct {
	Target    string `json:"target"`
	Policy    string `json:"policy"`
	Config    string `json:"config"`
	Instances []struct {
		Address string `json:"address"`
		State   string `json:"state"`
		Calls   struct {
			Started   int64 `json:"started"`
			Succeeded int64 `json:"succeeded"`
			InFlight  int64 `json:"inFlight"`
		} `json:"calls"`
		Policy string `json:"policy"`
	} `json:"instances"`
}

// getDebugJSON returns the page's JSON at url.
func getDebugJSON(t *testing.T, url string) debugJSON {
	t.Helper()
	var got debugJSON
	if err := json.Unmarshal([]byte(getDebug(t, url)), &got); err != nil {
		t.Fatal(err)
	}
	return got
}

// clientOf returns the client of target on the page; it fails the test if
// there is none.
func clientOf(t *testing.T, got debugJSON, target string) *debugClientJSON {
	t.Helper()
	for i := range got.Clients {
		if got.Clients[i].Target == target {
			return &got.Clients[i]
		}
	}
	t.Fatalf("clients = %+v, want one of target %s", got.Clients, target)
	return nil
}

func getDebug(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if strings.Contains(string(b), debugSecret) {
		t.Errorf("GET %s shows the secret %q", url, debugSecret)
	}
	return string(b)
}

// TestDebugHandler: the page and its JSON show the watch of a client, its
// three instances with their states and calls, and a registration until
// and after its Shutdown; no secret of the target shows.
func TestDebugHandler(t *testing.T) {
	bs, addrs := testbackend.StartN(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	svc := &lb.Service{FullName: testbackend.EchoService, Name: "debugpage", Balancer: lb.RoundRobin{}, Discovery: static.Config{}}
	target := "static:///" + strings.Join(addrs, ",")
	// The secret rides in a dial option's user agent, never in the page.
	c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock(), lb.WithTarget(target), lb.WithDialOptions(grpc.WithUserAgent(debugSecret)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitCalled(t, ctx, c, bs...)
	for range 30 {
		if err := testbackend.Call(ctx, c); err != nil {
			t.Fatal(err)
		}
	}

	s := grpc.NewServer()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := lb.Register(s, svc, &grpc.ServiceDesc{ServiceName: "debug.Page", HandlerType: (*any)(nil)}, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	go reg.Serve(lis)

	mux := http.NewServeMux()
	mux.Handle("/debug/lb/", http.StripPrefix("/debug/lb", lb.DebugHandler()))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	got := getDebugJSON(t, srv.URL+"/debug/lb/json")
	client := clientOf(t, got, target)
	if client.Policy != "lb_round_robin" && !strings.Contains(client.Policy, "round_robin") {
		t.Errorf("policy = %q, want round robin", client.Policy)
	}
	if len(client.Instances) != 3 {
		t.Fatalf("client instances = %+v, want 3", client.Instances)
	}
	var sum int64
	for _, in := range client.Instances {
		if in.State != "READY" || in.Calls.Succeeded == 0 {
			t.Errorf("instance %+v, want READY with calls", in)
		}
		sum += in.Calls.Succeeded
	}
	if sum < 33 {
		t.Errorf("calls succeeded over the instances = %d, want at least 33", sum)
	}
	found := false
	for _, w := range got.Watches {
		if w.Scheme == "static" && len(w.Instances) == 3 && w.ConfirmedSeconds >= 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("watches = %+v, want the static one with 3 instances, confirmed", got.Watches)
	}
	regStatus := func(d debugJSON) (string, bool) {
		for _, r := range d.Registrations {
			if r.Service == testbackend.EchoService {
				return r.Status, r.Shutdown != nil
			}
		}
		return "", false
	}
	if st, _ := regStatus(got); st == "" {
		t.Errorf("registrations = %+v, want %s", got.Registrations, testbackend.EchoService)
	}

	page := getDebug(t, srv.URL+"/debug/lb/")
	for _, want := range []string{"<table", addrs[0], addrs[1], addrs[2], "READY", "static"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not show %q", want)
		}
	}

	if err := reg.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	got = getDebugJSON(t, srv.URL+"/debug/lb/?format=json")
	if st, rep := regStatus(got); st != "shut down" || !rep {
		t.Errorf("after Shutdown: status %q, report %v; want shut down with a report", st, rep)
	}
}

// TestDebugHandlerPolicyColumn: with client-side health checking on (the
// default), each instance of a client at rest shows no call in flight (the
// health check's stream is not one) and what its policy keeps of it.
func TestDebugHandlerPolicyColumn(t *testing.T) {
	tests := []struct {
		name       string
		balancer   lb.Balancer
		wantPolicy string // every instance's policy column starts with it
	}{
		{"lb_least_request", lb.LeastRequest{}, "in flight 0"},
		{"lb_p2c_ewma", lb.P2CEWMA{}, "latency "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs, addrs := testbackend.StartN(t, 3)
			ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
			defer cancel()
			svc := &lb.Service{FullName: testbackend.EchoService, Name: "debugpolicy", Balancer: tt.balancer, Discovery: static.Config{}}
			target := "static:///" + strings.Join(addrs, ",")
			c, err := lb.Dial(ctx, svc, lb.WithInsecure(), lb.WithBlock(), lb.WithTarget(target))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			waitCalled(t, ctx, c, bs...)

			srv := httptest.NewServer(lb.DebugHandler())
			defer srv.Close()
			got := getDebugJSON(t, srv.URL+"/?format=json")
			client := clientOf(t, got, target)
			if client.Policy != tt.name {
				t.Errorf("policy = %q, want %q", client.Policy, tt.name)
			}
			if len(client.Instances) != 3 {
				t.Fatalf("client instances = %+v, want 3", client.Instances)
			}
			t.Logf("instances: %+v", client.Instances)
			for _, in := range client.Instances {
				if in.Calls.InFlight != 0 {
					t.Errorf("instance %s: in flight = %d at rest, want 0", in.Address, in.Calls.InFlight)
				}
				if !strings.HasPrefix(in.Policy, tt.wantPolicy) {
					t.Errorf("instance %s: policy column = %q, want %q...", in.Address, in.Policy, tt.wantPolicy)
				}
			}
			page := getDebug(t, srv.URL+"/")
			if !strings.Contains(page, "<th>policy</th>") || !strings.Contains(page, tt.wantPolicy) {
				t.Errorf("the page shows no policy column with %q", tt.wantPolicy)
			}
		})
	}
}
