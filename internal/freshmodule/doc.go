// Package freshmodule tests docs/getting-started.md as a new user follows
// it: in a temporary directory, it creates a module of its own, with a
// replace to this checkout (nothing is published), runs the guide's
// commands as they are written, writes its files, generates with buf and
// with protoc, builds and makes a call.
//
// The guide marks what the test uses with HTML comments, which a reader
// does not see:
//
//   - <!-- run --> before a ```sh block: the block is run with bash, the
//     first one in the temporary directory, the others in the module that
//     the first one creates;
//   - <!-- file: PATH --> before any fenced block: the block is written to
//     PATH in the module, before the next command runs.
//
// The test needs buf ($BUF, else on PATH) and protoc (on PATH), and skips
// without them unless LB_REQUIRE_TOOLS=1, as `make test` sets. It runs
// offline, from the module and build caches: GOPROXY=off, GOSUMDB=off (the
// checksum database is on the network; the cached modules were verified
// when they were downloaded), GOWORK=off, GOTOOLCHAIN=local, and GOFLAGS
// empty: the guide's commands run with Go's defaults, as a user's do (its
// `go mod tidy` fills go.sum; -mod=mod is not needed).
package freshmodule
