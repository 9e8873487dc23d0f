// Package docsnippets holds the tests that keep the documentation honest:
// every relative link in README.md and docs/*.md points at a file (and a
// heading) that exists, and every ```go block in them type-checks against
// this module.
//
// The convention for Go blocks (docs/development.md, "Snippets in the
// docs"):
//
//   - a block whose first code line starts with "package" is a whole file
//     and must check as it is, unused imports and variables included;
//   - a block whose first code line starts with "func ", "type ", "var " or
//     "const " holds declarations, put in a file of their own after the
//     prelude below;
//   - any other block is a function body: it goes inside
//     "func _() error { ... ; return nil }" after the prelude.
//
// The prelude imports the packages a reader of the docs has met (context,
// crypto/tls, crypto/x509, net, net/http, time, grpc, grpc/credentials,
// grpc/credentials/insecure, the OpenTelemetry metric SDK as sdkmetric,
// Prometheus's promhttp,
// runtime/lb, runtime/discovery, the policy packages, and the example's
// generated helloworld package as both pb and helloworld) and declares
// the names the snippets use without declaring them: ctx, grpcServer (a
// *grpc.Server), lis (a net.Listener), impl (a pb.GreeterServer), creds
// (credentials.TransportCredentials), addr (a string), reader (an
// sdkmetric.Reader) and caPEM (a PEM []byte). In a wrapped block, unused imports and variables are
// allowed (a snippet shows a call, not what is done with its result);
// every other error fails the test, with the markdown file and line.
package docsnippets
