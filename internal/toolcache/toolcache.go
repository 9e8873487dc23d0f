// Package toolcache finds the tool binaries the Makefile builds once and
// caches by version (make tools): $HOME/.cache/protoc-gen-go-lb/<tool>-<version>/<tool>,
// unless an environment variable names the binary.
package toolcache

import (
	"os"
	"path/filepath"
)

// Find returns the binary named by the environment variable env, else the
// cached build of tool at version; ok is false when neither is there.
func Find(env, tool, version string) (path string, ok bool) {
	if p := os.Getenv(env); p != "" {
		return p, true
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, ".cache", "protoc-gen-go-lb", tool+"-"+version, tool)
	if _, err := os.Stat(p); err != nil {
		return "", false
	}
	return p, true
}
