// Package logtest records what a package logs, for tests: a Buffer for the
// grpclog logger a package's TestMain sets once, and a Logger for a
// component that takes a logger of its own.
//
//	var testLogs = &logtest.Buffer{}
//
//	func TestMain(m *testing.M) {
//		grpclog.SetLoggerV2(grpclog.NewLoggerV2(testLogs, io.Discard, io.Discard))
//		os.Exit(m.Run())
//	}
//
//	func TestX(t *testing.T) {
//		testLogs.Take()
//		// ...
//		if got := testLogs.Take(); !strings.Contains(got, "dropping") { ... }
//	}
package logtest

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc/grpclog"
)

// Buffer collects log output, for a grpclog logger set once in a
// package's TestMain.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder // guarded by mu
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything logged since the last Take.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Take returns what was logged since the last Take.
func (l *Buffer) Take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	l.b.Reset()
	return s
}

// Logger is a grpclog logger that records what is logged with Infof and
// Warningf and discards the rest, for a component that takes a logger of
// its own.
type Logger struct {
	grpclog.LoggerV2

	mu       sync.Mutex
	infos    []string // guarded by mu
	warnings []string // guarded by mu
}

// NewLogger returns an empty Logger.
func NewLogger() *Logger {
	return &Logger{LoggerV2: grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard)}
}

func (l *Logger) Infof(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.infos = append(l.infos, fmt.Sprintf(format, args...))
}

func (l *Logger) Warningf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.warnings = append(l.warnings, fmt.Sprintf(format, args...))
}

func (*Logger) InfoDepth(int, ...any)    {}
func (*Logger) WarningDepth(int, ...any) {}
func (*Logger) ErrorDepth(int, ...any)   {}
func (*Logger) FatalDepth(int, ...any)   {}

// Infos returns what was logged with Infof.
func (l *Logger) Infos() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.infos)
}

// Warnings returns what was logged with Warningf.
func (l *Logger) Warnings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.warnings)
}
