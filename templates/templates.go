// Package templates holds the shape of the _lb.pb.go files protoc-gen-go-lb
// writes, as text/template files:
//
//	file.tmpl     the header, each service in turn, the deprecation notice
//	policy.tmpl   a service's registry name and lb.Service value
//	client.tmpl   the balanced client
//	server.tmpl   the server helpers
//
// They read the plugin's model of a file (cmd/protoc-gen-go-lb/model.go),
// whose fields are data, and hold no logic beyond range and if over them.
// Two functions write what is not plain text:
//
//	{{ident .LB.Dial}}   a protogen.GoIdent, qualified by the GeneratedFile,
//	                     which imports its package: lb.Dial
//	{{value .Timeout}}   a typed option value as a Go expression:
//	                     2 * time.Second, "name", []string{"a"}, 1.5
//
// The plugin parses them once per run and executes them straight into
// each protogen.GeneratedFile, which formats the result with gofmt:
//
//	t, err := templates.Parse()
//	...
//	err = t.Execute(g, "header", file)
package templates

import (
	"embed"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/template"
	"time"

	"google.golang.org/protobuf/compiler/protogen"
)

//go:embed *.tmpl
var files embed.FS

// Templates are the parsed templates.
type Templates struct {
	t *template.Template
}

// Parse parses the templates.
func Parse() (*Templates, error) {
	t, err := template.New("templates").Funcs(funcs(nil)).ParseFS(files, "*.tmpl")
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	return &Templates{t: t}, nil
}

// Execute writes the template name with data into g, qualifying
// identifiers through g.
func (t *Templates) Execute(g *protogen.GeneratedFile, name string, data any) error {
	c, err := t.t.Clone()
	if err != nil {
		return fmt.Errorf("templates: %w", err)
	}
	return c.Funcs(funcs(g)).ExecuteTemplate(g, name, data)
}

// funcs are the functions the templates call, writing through g (nil
// while parsing).
func funcs(g *protogen.GeneratedFile) template.FuncMap {
	return template.FuncMap{
		"ident": func(id protogen.GoIdent) string { return g.QualifiedGoIdent(id) },
		"value": func(v any) (string, error) { return value(g.QualifiedGoIdent, v) },
	}
}

var timePackage = protogen.GoImportPath("time")

// value writes v, a typed value of the model, as a Go expression;
// durations in their largest whole unit ("2 * time.Second"), through
// ident.
func value(ident func(protogen.GoIdent) string, v any) (string, error) {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v), nil
	case []string:
		quoted := make([]string, len(v))
		for i, s := range v {
			quoted[i] = strconv.Quote(s)
		}
		return "[]string{" + strings.Join(quoted, ", ") + "}", nil
	case bool:
		return strconv.FormatBool(v), nil
	case int, int32, int64, uint32, uint64:
		return fmt.Sprint(v), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "", fmt.Errorf("value: %v has no Go literal", v)
		}
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case time.Duration:
		return duration(ident, v), nil
	case protogen.GoIdent:
		return ident(v), nil
	}
	return "", fmt.Errorf("value: a %T is not a value the templates write", v)
}

// duration writes d in the largest whole unit: "2 * time.Second",
// "time.Millisecond".
func duration(ident func(protogen.GoIdent) string, d time.Duration) string {
	if d == 0 {
		return "0"
	}
	units := []struct {
		d    time.Duration
		name string
	}{{time.Hour, "Hour"}, {time.Minute, "Minute"}, {time.Second, "Second"}, {time.Millisecond, "Millisecond"}, {time.Microsecond, "Microsecond"}, {time.Nanosecond, "Nanosecond"}}
	for _, u := range units {
		if d%u.d == 0 || u.d == time.Nanosecond {
			unit := ident(timePackage.Ident(u.name))
			if d == u.d {
				return unit
			}
			return fmt.Sprintf("%d * %s", d/u.d, unit)
		}
	}
	return "" // unreachable: the last unit divides every duration
}
