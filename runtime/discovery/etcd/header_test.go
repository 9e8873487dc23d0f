package etcd

import (
	"context"
	"net"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// headerlessKV answers every Range with an instance and no header: what an
// empty or cut message decodes to, which a real etcd does not send on
// demand.
type headerlessKV struct {
	pb.UnimplementedKVServer
}

func (headerlessKV) Range(context.Context, *pb.RangeRequest) (*pb.RangeResponse, error) {
	return &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{{Key: []byte("/services/svc/a"), Value: []byte("10.0.0.1:50051")}}}, nil
}

// sentUpdates records what a source sends.
type sentUpdates struct {
	discovery.Updates // unused methods panic
	resets, flushes   int
}

func (u *sentUpdates) Reset([]discovery.Instance, []discovery.Dropped) { u.resets++ }
func (u *sentUpdates) Flush()                                          { u.flushes++ }

// TestListWithoutHeader: a list answer without a header (no revision to
// watch from) is an error, and nothing of it is sent: the last good state
// stays, and the process goes on (no nil dereference of the header).
func TestListWithoutHeader(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterKVServer(srv, headerlessKV{})
	go srv.Serve(lis)
	defer srv.Stop()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{lis.Addr().String()}, DialTimeout: RequestTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := &source{t: target{prefix: "/services/svc"}, client: c, onList: func(int64) {}, warned: map[string]string{}, warn: discovery.NewLogLimiter(logger)}
	u := &sentUpdates{}
	_, err = s.list(context.Background(), u)
	if err == nil || !strings.Contains(err.Error(), "no header") {
		t.Fatalf("list = %v, want an error saying the response has no header", err)
	}
	if u.resets+u.flushes != 0 {
		t.Errorf("list sent %d resets and %d flushes, want none", u.resets, u.flushes)
	}
}
