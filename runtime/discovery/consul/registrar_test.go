package consul

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/grpclog"

	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/consulagent"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/internal/resolvertest"
	"github.com/protoc-gen-go-lb/protoc-gen-go-lb/runtime/discovery"
)

// recordingLogger records what the registrar logs with Infof and
// Warningf, and discards the rest.
type recordingLogger struct {
	grpclog.LoggerV2

	mu       sync.Mutex
	infos    []string // guarded by mu
	warnings []string // guarded by mu
}

func newRecordingLogger() *recordingLogger {
	return &recordingLogger{LoggerV2: grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard)}
}

func (l *recordingLogger) Infof(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.infos = append(l.infos, fmt.Sprintf(format, args...))
}

func (l *recordingLogger) Warningf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.warnings = append(l.warnings, fmt.Sprintf(format, args...))
}

func (*recordingLogger) InfoDepth(int, ...any)    {}
func (*recordingLogger) WarningDepth(int, ...any) {}
func (*recordingLogger) ErrorDepth(int, ...any)   {}
func (*recordingLogger) FatalDepth(int, ...any)   {}

// TestDeregisterIsNotAWarning: a deliberate Deregister is logged at Info,
// not as a warning.
func TestDeregisterIsNotAWarning(t *testing.T) {
	a, err := consulagent.Start(t.TempDir(), "")
	if err == consulagent.ErrNoBinary && os.Getenv("LB_REQUIRE_TOOLS") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), resolvertest.Timeout)
	defer cancel()
	reg, err := Config{Address: a.HTTPAddr()}.NewRegistrar(discovery.Instance{Service: "greeter", ID: "g1", Address: "127.0.0.1:1", HealthService: "test.Greeter"}, "")
	if err != nil {
		t.Fatal(err)
	}
	r := reg.(*Registrar)
	log := newRecordingLogger()
	r.log = log
	if err := r.Register(ctx); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	if err := r.Deregister(ctx); err != nil {
		t.Fatalf("Deregister() = %v", err)
	}
	if err := r.Status(); !errors.Is(err, ErrDeregistered) {
		t.Errorf("Status() = %v, want ErrDeregistered", err)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.warnings) > 0 {
		t.Errorf("warnings logged = %q, want none", log.warnings)
	}
	want := []string{"consul: registered g1", "consul: deregistered g1"}
	if diff := cmp.Diff(want, log.infos); diff != "" {
		t.Errorf("infos logged (-want +got):\n%s", diff)
	}
}
