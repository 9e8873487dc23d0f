package lbpb

import _ "embed" // for OptionsProto

// OptionsProto is the text of lb/options.proto, the file this package is
// generated from. protoc-gen-go-lb writes it out (`protoc-gen-go-lb
// --include DIR` makes DIR/lb/options.proto) so that protoc and buf find
// the import "lb/options.proto" outside this repository.
//
//go:embed options.proto
var OptionsProto []byte
