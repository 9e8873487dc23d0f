// Command plot draws docs/bench's charts from the output of the bench
// module's benchmarks, as plain SVG:
//
//   - pick.svg: the median ns/op of BenchmarkPick's op=pick_done runs, a
//     row of bars per policy at 3, 10 and 100 endpoints, serial and parallel
//     side by side, on a log scale;
//   - tail.svg: the latency distribution of each policy in BenchmarkTail,
//     from the histograms written with -tail.out: latency on a log x axis,
//     the share of calls at most that slow on a "nines" y axis (50%, 90%,
//     99%, 99.9%, ...), so that the tail takes most of the height;
//   - tail-churn.svg: the same for BenchmarkTail with -tail.churn, from
//     -hist-churn;
//   - gray.svg: BenchmarkGray's failed calls per second over time, from the
//     CSVs written with -gray.out, a panel per scenario, a line per policy,
//     on a log(1+n) y axis so that a handful of failures still shows;
//   - subset.svg: BenchmarkSubset's connections per instance, from the CSV
//     written with -subset.out, a line per policy, the instances from the
//     most connected to the least;
//   - summary.md: the same numbers as Markdown tables, with
//     BenchmarkSubset's and BenchmarkCrossZone's.
//
// Usage (make bench runs it):
//
//	go run ./cmd/plot -pick ../docs/bench/pick.txt -tail ../docs/bench/tail.txt -hist ../docs/bench/tail \
//		-tail-churn ../docs/bench/tail-churn.txt -hist-churn ../docs/bench/tail-churn \
//		-gray ../docs/bench/gray.txt -gray-csv ../docs/bench/gray \
//		-subset ../docs/bench/subset.txt -subset-csv ../docs/bench/subset.csv \
//		-crosszone ../docs/bench/crosszone.txt -out ../docs/bench
package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

func main() {
	pickFile := flag.String("pick", "", "go test -bench output of BenchmarkPick")
	tailFile := flag.String("tail", "", "go test -bench output of BenchmarkTail")
	histDir := flag.String("hist", "", "directory of BenchmarkTail's <policy>.csv histograms")
	churnFile := flag.String("tail-churn", "", "go test -bench output of BenchmarkTail with -tail.churn")
	churnHistDir := flag.String("hist-churn", "", "directory of the <policy>.csv histograms of BenchmarkTail with -tail.churn")
	grayFile := flag.String("gray", "", "go test -bench output of BenchmarkGray")
	grayDir := flag.String("gray-csv", "", "directory of BenchmarkGray's <scenario>.csv failed calls per second")
	subsetFile := flag.String("subset", "", "go test -bench output of BenchmarkSubset")
	subsetCSV := flag.String("subset-csv", "", "BenchmarkSubset's connections per instance, the CSV of -subset.out")
	crossFile := flag.String("crosszone", "", "go test -bench output of BenchmarkCrossZone")
	out := flag.String("out", ".", "directory to write pick.svg, tail.svg, tail-churn.svg, gray.svg, subset.svg and summary.md to")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("plot: ")
	in := inputs{*pickFile, *tailFile, *histDir, *churnFile, *churnHistDir, *grayFile, *grayDir, *subsetFile, *subsetCSV, *crossFile}
	if err := run(in, *out); err != nil {
		log.Fatal(err)
	}
}

// inputs are the files and directories of the flags above; "": not given.
type inputs struct {
	pickFile, tailFile, histDir, churnFile, churnHistDir string
	grayFile, grayDir                                    string
	subsetFile, subsetCSV, crossFile                     string
}

func run(in inputs, out string) error {
	pickFile, tailFile, histDir, churnFile, churnHistDir, grayFile, grayDir := in.pickFile, in.tailFile, in.histDir, in.churnFile, in.churnHistDir, in.grayFile, in.grayDir
	var summary strings.Builder
	if pickFile != "" {
		res, err := readBench(pickFile)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, "pick.svg"), pickSVG(res), 0o644); err != nil {
			return err
		}
		pickSummary(&summary, res)
	}
	tails := []struct{ file, hist, heading, svg, title string }{
		{tailFile, histDir, "BenchmarkTail", "tail.svg", "Call latency with 1 of 10 backends 50 ms slow, open loop"},
		{churnFile, churnHistDir, "BenchmarkTail with an instance joining or leaving every 5 s (-tail.churn)", "tail-churn.svg", "Call latency, 1 of 10 backends 50 ms slow, an 11th joining or leaving every 5 s"},
	}
	for _, t := range tails {
		if t.file != "" {
			res, err := readBench(t.file)
			if err != nil {
				return err
			}
			tailSummary(&summary, res, t.heading)
		}
		if t.hist != "" {
			hists, err := readHistograms(t.hist)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(out, t.svg), tailSVG(hists, t.title), 0o644); err != nil {
				return err
			}
		}
	}
	if grayFile != "" {
		res, err := readBench(grayFile)
		if err != nil {
			return err
		}
		graySummary(&summary, res)
	}
	if grayDir != "" {
		series, err := readGray(grayDir)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, "gray.svg"), graySVG(series), 0o644); err != nil {
			return err
		}
	}
	if in.subsetFile != "" {
		res, err := readBench(in.subsetFile)
		if err != nil {
			return err
		}
		subsetSummary(&summary, res)
	}
	if in.subsetCSV != "" {
		cols, err := readColumns(in.subsetCSV)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, "subset.svg"), subsetSVG(cols), 0o644); err != nil {
			return err
		}
	}
	if in.crossFile != "" {
		res, err := readBench(in.crossFile)
		if err != nil {
			return err
		}
		crossZoneSummary(&summary, res)
	}
	return os.WriteFile(filepath.Join(out, "summary.md"), []byte(summary.String()), 0o644)
}

// bench is one benchmark's results: its name's key=value parts and the
// values of each unit over its runs (-count).
type bench struct {
	keys   map[string]string
	values map[string][]float64
}

// results are benchmarks by name (without the -GOMAXPROCS suffix), in
// the order they first appear.
type results struct {
	names []string
	byKey map[string]*bench
}

// readBench reads go test -bench output.
func readBench(path string) (*results, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := &results{byKey: map[string]*bench{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := fields[0]
		if i := strings.LastIndexByte(name, '-'); i > strings.LastIndexByte(name, '/') {
			name = name[:i]
		}
		// A repeated sub-benchmark (BenchmarkTail's rounds) is named
		// <name>#01, #02, ...: its values join the first's, in order.
		if i := strings.LastIndexByte(name, '#'); i > strings.LastIndexByte(name, '/') {
			name = name[:i]
		}
		b := res.byKey[name]
		if b == nil {
			b = &bench{keys: map[string]string{}, values: map[string][]float64{}}
			for _, part := range strings.Split(name, "/")[1:] {
				if k, v, ok := strings.Cut(part, "="); ok {
					b.keys[k] = v
				}
			}
			res.byKey[name] = b
			res.names = append(res.names, name)
		}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %w", path, sc.Text(), err)
			}
			b.values[fields[i+1]] = append(b.values[fields[i+1]], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(res.names) == 0 {
		return nil, fmt.Errorf("%s: no benchmark results", path)
	}
	return res, nil
}

// find returns the benchmark whose keys are all of want's.
func (r *results) find(want map[string]string) *bench {
	for _, name := range r.names {
		b := r.byKey[name]
		match := true
		for k, v := range want {
			if b.keys[k] != v {
				match = false
				break
			}
		}
		if match {
			return b
		}
	}
	return nil
}

// distinct returns the values of key in order of first appearance.
func (r *results) distinct(key string) []string {
	var vs []string
	for _, name := range r.names {
		if v := r.byKey[name].keys[key]; v != "" && !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	return vs
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

func (b *bench) median(unit string) float64 {
	if b == nil {
		return math.NaN()
	}
	return median(b.values[unit])
}

func pickSummary(w io.Writer, r *results) {
	fmt.Fprintf(w, "## BenchmarkPick, median of %d runs\n", len(r.byKey[r.names[0]].values["ns/op"]))
	endpoints := r.distinct("endpoints")
	for _, op := range r.distinct("op") {
		for _, mode := range r.distinct("mode") {
			fmt.Fprintf(w, "\nop=%s, mode=%s: ns/op (allocs/op)\n\n| policy |", op, mode)
			for _, n := range endpoints {
				fmt.Fprintf(w, " %s |", n)
			}
			fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|", len(endpoints)))
			for _, p := range r.distinct("policy") {
				fmt.Fprintf(w, "| %s |", p)
				for _, n := range endpoints {
					b := r.find(map[string]string{"policy": p, "endpoints": n, "op": op, "mode": mode})
					fmt.Fprintf(w, " %s (%s) |", num(b.median("ns/op")), num(b.median("allocs/op")))
				}
				fmt.Fprintln(w)
			}
		}
	}
}

func tailSummary(w io.Writer, r *results, heading string) {
	units := []string{"slow-share-%", "p50-ms", "p99-ms", "p999-ms", "errors"}
	policies := r.distinct("policy")
	runs := len(r.find(map[string]string{"policy": policies[0]}).values["p999-ms"])
	fmt.Fprintf(w, "\n## %s, median of %d runs (lowest-highest)\n\n| policy | %s |\n|---|%s\n", heading, runs, strings.Join(units, " | "), strings.Repeat("---:|", len(units)))
	for _, p := range policies {
		b := r.find(map[string]string{"policy": p})
		fmt.Fprintf(w, "| %s |", p)
		for _, u := range units {
			vs := b.values[u]
			fmt.Fprintf(w, " %s", num(b.median(u)))
			if lo, hi := slices.Min(vs), slices.Max(vs); lo != hi {
				fmt.Fprintf(w, " (%s-%s)", num(lo), num(hi))
			}
			fmt.Fprint(w, " |")
		}
		fmt.Fprintln(w)
	}
	pairedRatios(w, r, policies, "gozero_p2c_ewma", []string{"p99-ms", "p999-ms"})
}

// pairedRatios writes, for each policy but base, the median (lowest-highest)
// of its per-run ratios to base's, run k against run k: BenchmarkTail's
// rounds, in which the policies take turns, make run k of each policy one
// stretch of the machine's load.
func pairedRatios(w io.Writer, r *results, policies []string, base string, units []string) {
	bb := r.find(map[string]string{"policy": base})
	if bb == nil {
		return
	}
	fmt.Fprintf(w, "\nAgainst %s in the same round: median (lowest-highest) of the ratios\n\n| policy | %s |\n|---|%s\n", base, strings.Join(units, " | "), strings.Repeat("---:|", len(units)))
	for _, p := range policies {
		b := r.find(map[string]string{"policy": p})
		if p == base || b == nil {
			continue
		}
		fmt.Fprintf(w, "| %s |", p)
		for _, u := range units {
			var ratios []float64
			for k, v := range b.values[u] {
				if k < len(bb.values[u]) && bb.values[u][k] > 0 {
					ratios = append(ratios, v/bb.values[u][k])
				}
			}
			if len(ratios) == 0 {
				fmt.Fprint(w, " - |")
				continue
			}
			slices.Sort(ratios)
			fmt.Fprintf(w, " %sx", num(median(ratios)))
			if lo, hi := ratios[0], ratios[len(ratios)-1]; lo != hi {
				fmt.Fprintf(w, " (%s-%s)", num(lo), num(hi))
			}
			fmt.Fprint(w, " |")
		}
		fmt.Fprintln(w)
	}
}

// num formats v with 3 significant digits.
func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// palette: colour-blind-safe (Okabe-Ito, then Tol's).
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000", "#882255", "#44AA99", "#999933", "#AA4499"}

// svg is a tiny SVG writer.
type svg struct{ strings.Builder }

func newSVG(w, h int) *svg {
	s := &svg{}
	fmt.Fprintf(s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(s, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	return s
}

func (s *svg) line(x1, y1, x2, y2 float64, stroke string, width float64, dash string) {
	fmt.Fprintf(s, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"`, x1, y1, x2, y2, stroke, width)
	if dash != "" {
		fmt.Fprintf(s, ` stroke-dasharray="%s"`, dash)
	}
	s.WriteString("/>\n")
}

func (s *svg) rect(x, y, w, h float64, fill string) {
	fmt.Fprintf(s, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y, w, h, fill)
}

func (s *svg) text(x, y float64, anchor, t string, extra string) {
	fmt.Fprintf(s, `<text x="%.1f" y="%.1f" text-anchor="%s" %s>%s</text>`+"\n", x, y, anchor, extra, html.EscapeString(t))
}

func (s *svg) polyline(pts [][2]float64, stroke string) {
	s.WriteString(`<polyline fill="none" stroke-width="2" stroke="` + stroke + `" points="`)
	for _, p := range pts {
		fmt.Fprintf(s, "%.1f,%.1f ", p[0], p[1])
	}
	s.WriteString("\"/>\n")
}

func (s *svg) bytes() []byte { return []byte(s.String() + "</svg>\n") }

// logScale maps [lo, hi] (both > 0) to [a, b] logarithmically.
type logScale struct{ lo, hi, a, b float64 }

func (l logScale) at(v float64) float64 {
	v = min(max(v, l.lo), l.hi)
	return l.a + (l.b-l.a)*(math.Log10(v)-math.Log10(l.lo))/(math.Log10(l.hi)-math.Log10(l.lo))
}

// niceBelow returns the largest of 1, 2, 5 times a power of ten that is at
// most v.
func niceBelow(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{5, 2} {
		if m*p <= v {
			return m * p
		}
	}
	return p
}

// ticks returns 1, 2, 5 times the powers of ten in [lo, hi].
func (l logScale) ticks() []float64 {
	var ts []float64
	for e := math.Floor(math.Log10(l.lo)); e <= math.Ceil(math.Log10(l.hi)); e++ {
		for _, m := range []float64{1, 2, 5} {
			if v := m * math.Pow(10, e); v >= l.lo*0.999 && v <= l.hi*1.001 {
				ts = append(ts, v)
			}
		}
	}
	return ts
}

func pickSVG(r *results) []byte {
	policies := r.distinct("policy")
	endpoints := r.distinct("endpoints")
	modes := r.distinct("mode")
	const op = "pick_done"
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, b := range r.byKey {
		if b.keys["op"] == op {
			v := b.median("ns/op")
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))

	const (
		left, panelW, gap, top, barH, groupGap = 190.0, 330.0, 30.0, 60.0, 7.0, 8.0
	)
	groupH := barH*float64(len(endpoints)) + groupGap
	height := top + groupH*float64(len(policies)) + 60
	width := left + (panelW+gap)*float64(len(modes)) + 10
	s := newSVG(int(width), int(height))
	s.text(width/2, 22, "middle", "Pick + Done, median ns/op (log scale; shorter is faster)", `font-size="15" font-weight="bold"`)
	for i, n := range endpoints {
		x := left + float64(i)*110
		s.rect(x, 32, 12, 10, palette[i])
		s.text(x+16, 41, "start", n+" endpoints", "")
	}
	for m, mode := range modes {
		x0 := left + float64(m)*(panelW+gap)
		sc := logScale{lo, hi, x0, x0 + panelW}
		bottom := top + groupH*float64(len(policies))
		for _, t := range sc.ticks() {
			x := sc.at(t)
			s.line(x, top-4, x, bottom, "#ddd", 1, "")
			s.text(x, bottom+14, "middle", num(t), `fill="#444"`)
		}
		s.text(x0+panelW/2, bottom+34, "middle", "ns/op, mode="+mode, "")
		for p, pol := range policies {
			y0 := top + groupH*float64(p)
			if m == 0 {
				weight := ""
				if strings.HasPrefix(pol, "lb_") {
					weight = `font-weight="bold"`
				}
				s.text(left-8, y0+groupH/2, "end", pol, weight)
			}
			for e, n := range endpoints {
				v := r.find(map[string]string{"policy": pol, "endpoints": n, "op": op, "mode": mode}).median("ns/op")
				if math.IsNaN(v) {
					continue
				}
				y := y0 + barH*float64(e)
				s.rect(x0, y, sc.at(v)-x0, barH-1, palette[e])
			}
		}
		s.line(x0, top-4, x0, bottom, "#444", 1, "")
	}
	s.text(left-8, height-8, "end", "ours in bold", `fill="#444"`)
	return s.bytes()
}

// hist is one policy's latency histogram: upper bounds in ms and counts.
type hist struct {
	policy string
	le     []float64
	count  []float64
}

func readHistograms(dir string) ([]hist, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s: no histograms", dir)
	}
	var hs []hist
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		rows, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		h := hist{policy: strings.TrimSuffix(filepath.Base(path), ".csv")}
		for _, row := range rows[1:] {
			le, err1 := strconv.ParseFloat(row[0], 64)
			n, err2 := strconv.ParseFloat(row[1], 64)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			h.le = append(h.le, le)
			h.count = append(h.count, n)
		}
		hs = append(hs, h)
	}
	// Ours last, so that their lines are drawn on top.
	slices.SortStableFunc(hs, func(a, b hist) int {
		return boolInt(strings.HasPrefix(a.policy, "lb_")) - boolInt(strings.HasPrefix(b.policy, "lb_"))
	})
	return hs, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func tailSVG(hs []hist, title string) []byte {
	const (
		left, top, w, h = 70.0, 50.0, 640.0, 380.0
		maxNines        = 4.0 // 99.99%
	)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, hh := range hs {
		for i, le := range hh.le {
			if hh.count[i] > 0 {
				lo, hi = min(lo, le), max(hi, le)
			}
		}
	}
	lo, hi = niceBelow(lo), math.Pow(10, math.Ceil(math.Log10(hi)))
	xs := logScale{lo, hi, left, left + w}
	ny := func(nines float64) float64 { return top + h - h*min(nines, maxNines)/maxNines }

	s := newSVG(int(left+w+230), int(top+h+50))
	s.text(left+w/2, 22, "middle", title, `font-size="15" font-weight="bold"`)
	for _, t := range xs.ticks() {
		x := xs.at(t)
		s.line(x, top, x, top+h, "#ddd", 1, "")
		s.text(x, top+h+16, "middle", num(t), `fill="#444"`)
	}
	s.text(left+w/2, top+h+38, "middle", "latency, ms (log scale)", "")
	for _, q := range []struct {
		nines float64
		label string
	}{{0, "0%"}, {math.Log10(2), "50%"}, {1, "90%"}, {2, "99%"}, {3, "99.9%"}, {4, "99.99%"}} {
		y := ny(q.nines)
		s.line(left, y, left+w, y, "#ddd", 1, "")
		s.text(left-6, y+4, "end", q.label, `fill="#444"`)
	}
	s.text(16, top+h/2, "middle", "calls at most this slow", fmt.Sprintf(`transform="rotate(-90 16 %.0f)"`, top+h/2))
	for i, hh := range hs {
		var total float64
		for _, n := range hh.count {
			total += n
		}
		var pts [][2]float64
		var cum float64
		for j, le := range hh.le {
			cum += hh.count[j]
			nines := maxNines
			if rest := (total - cum) / total; rest > 0 {
				nines = -math.Log10(rest)
			}
			pts = append(pts, [2]float64{xs.at(le), ny(nines)})
			if nines >= maxNines {
				break
			}
		}
		colour := palette[i%len(palette)]
		s.polyline(pts, colour)
		y := top + 10 + 20*float64(i)
		s.line(left+w+15, y-4, left+w+40, y-4, colour, 3, "")
		weight := ""
		if strings.HasPrefix(hh.policy, "lb_") {
			weight = `font-weight="bold"`
		}
		s.text(left+w+46, y, "start", hh.policy, weight)
	}
	s.line(left, top+h, left+w, top+h, "#444", 1, "")
	s.line(left, top, left, top+h, "#444", 1, "")
	return s.bytes()
}

// graySummary writes BenchmarkGray's results, a table per scenario, and
// each policy's failed calls over grpc-go's A50 policy's and go-zero's.
func graySummary(w io.Writer, r *results) {
	units := []string{"failed", "bad-calls", "eject-ms", "bad-after"}
	bases := []string{"outlier_detection_experimental>round_robin", "gozero_p2c_ewma"}
	fmt.Fprintf(w, "\n## BenchmarkGray\n")
	for _, sc := range r.distinct("scenario") {
		fmt.Fprintf(w, "\nscenario=%s (eject-ms -1: never)\n\n| policy | %s | failed / A50's | failed / go-zero's |\n|---|%s---:|---:|\n", sc, strings.Join(units, " | "), strings.Repeat("---:|", len(units)))
		var baseFailed []float64
		for _, base := range bases {
			baseFailed = append(baseFailed, r.find(map[string]string{"scenario": sc, "policy": base}).median("failed"))
		}
		for _, p := range r.distinct("policy") {
			b := r.find(map[string]string{"scenario": sc, "policy": p})
			if b == nil {
				continue
			}
			fmt.Fprintf(w, "| %s |", p)
			for _, u := range units {
				fmt.Fprintf(w, " %s |", num(b.median(u)))
			}
			for _, bf := range baseFailed {
				if bf > 0 {
					fmt.Fprintf(w, " %s |", num(b.median("failed")/bf))
				} else {
					fmt.Fprint(w, " - |")
				}
			}
			fmt.Fprintln(w)
		}
	}
}

// graySeries is one scenario's failed calls per second, a column per
// policy, from BenchmarkGray's <scenario>.csv.
type graySeries struct {
	scenario string
	policies []string
	perSec   [][]float64 // [policy][second]
}

func readGray(dir string) ([]graySeries, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s: no gray failure CSVs", dir)
	}
	// The worse failure first: fail100 before fail30.
	slices.SortFunc(paths, func(a, b string) int { return failPercent(b) - failPercent(a) })
	var all []graySeries
	for _, path := range paths {
		cols, err := readColumns(path)
		if err != nil {
			return nil, err
		}
		all = append(all, graySeries{scenario: strings.TrimSuffix(filepath.Base(path), ".csv"), policies: cols.policies, perSec: cols.values})
	}
	return all, nil
}

// columns is a CSV of the bench module's writeColumns: a column per
// policy after the first (the row's number), each a value per row.
type columns struct {
	policies []string
	values   [][]float64 // [policy][row]; a column may end early
}

func readColumns(path string) (columns, error) {
	f, err := os.Open(path)
	if err != nil {
		return columns{}, err
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		return columns{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) < 2 {
		return columns{}, fmt.Errorf("%s: no rows", path)
	}
	c := columns{policies: rows[0][1:]}
	c.values = make([][]float64, len(c.policies))
	for _, row := range rows[1:] {
		for i, cell := range row[1:] {
			if cell == "" {
				continue
			}
			v, err := strconv.ParseFloat(cell, 64)
			if err != nil {
				return columns{}, fmt.Errorf("%s: %w", path, err)
			}
			c.values[i] = append(c.values[i], v)
		}
	}
	return c, nil
}

// failPercent is N of a path ending failN.csv, or 0.
func failPercent(path string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(strings.TrimSuffix(filepath.Base(path), ".csv"), "fail"))
	return n
}

// graySVG draws a panel per scenario, stacked: failed calls per second
// against seconds since the bad backend started failing, y = log10(1+n).
// A policy has the same colour in every panel; ours are drawn last, on top.
func graySVG(all []graySeries) []byte {
	const (
		left, top, w, panelH, gap = 70.0, 50.0, 640.0, 220.0, 60.0
	)
	var policies []string
	maxSec, maxV := 1.0, 1.0
	for _, g := range all {
		for i, p := range g.policies {
			if !slices.Contains(policies, p) {
				policies = append(policies, p)
			}
			maxSec = max(maxSec, float64(len(g.perSec[i])))
			for _, v := range g.perSec[i] {
				maxV = max(maxV, v)
			}
		}
	}
	colour := map[string]string{}
	for i, p := range policies {
		colour[p] = palette[i%len(palette)]
	}
	hiV := niceBelow(maxV)
	if hiV < maxV {
		hiV = niceBelow(hiV * 2.5) // the next of 1, 2, 5 times a power of ten
	}
	height := top + (panelH+gap)*float64(len(all)) + 10
	s := newSVG(int(left+w+300), int(height))
	s.text(left+w/2, 22, "middle", "Failed calls per second, 1 of 10 backends failing while SERVING, 1,000 calls/s", `font-size="15" font-weight="bold"`)
	for k, g := range all {
		y0 := top + (panelH+gap)*float64(k)
		x := func(sec float64) float64 { return left + w*sec/maxSec }
		y := func(v float64) float64 { return y0 + panelH - panelH*math.Log10(1+v)/math.Log10(1+hiV) }
		for _, t := range (logScale{lo: 1, hi: hiV}).ticks() {
			s.line(left, y(t), left+w, y(t), "#ddd", 1, "")
			s.text(left-6, y(t)+4, "end", num(t), `fill="#444"`)
		}
		s.text(left-6, y(0)+4, "end", "0", `fill="#444"`)
		step := 10.0
		for sec := 0.0; sec <= maxSec; sec += step {
			s.line(x(sec), y0, x(sec), y0+panelH, "#ddd", 1, "")
			s.text(x(sec), y0+panelH+16, "middle", num(sec), `fill="#444"`)
		}
		s.text(left+w/2, y0-8, "middle", "scenario="+g.scenario, `font-weight="bold"`)
		s.text(left+w/2, y0+panelH+34, "middle", "seconds since the backend started failing", "")
		s.text(16, y0+panelH/2, "middle", "failed calls/s", fmt.Sprintf(`transform="rotate(-90 16 %.0f)"`, y0+panelH/2))
		order := slices.Clone(g.policies)
		slices.SortStableFunc(order, func(a, b string) int {
			return boolInt(strings.HasPrefix(a, "lb_")) - boolInt(strings.HasPrefix(b, "lb_"))
		})
		for _, p := range order {
			vs := g.perSec[slices.Index(g.policies, p)]
			var pts [][2]float64
			for sec, v := range vs { // a step per second
				pts = append(pts, [2]float64{x(float64(sec)), y(v)}, [2]float64{x(float64(sec + 1)), y(v)})
			}
			s.polyline(pts, colour[p])
		}
		s.line(left, y0+panelH, left+w, y0+panelH, "#444", 1, "")
		s.line(left, y0, left, y0+panelH, "#444", 1, "")
	}
	for i, p := range policies {
		y := top + 10 + 20*float64(i)
		s.line(left+w+15, y-4, left+w+40, y-4, colour[p], 3, "")
		weight := ""
		if strings.HasPrefix(p, "lb_") {
			weight = `font-weight="bold"`
		}
		s.text(left+w+46, y, "start", p, weight)
	}
	s.text(left+w+15, top+10+20*float64(len(policies))+10, "start", "y: log(1+n) scale; ours in bold", `fill="#444"`)
	return s.bytes()
}

// subsetSummary writes BenchmarkSubset's results: balance, and each
// change's connections moved against those it needs.
func subsetSummary(w io.Writer, r *results) {
	fmt.Fprintf(w, "\n## BenchmarkSubset\n\n300 clients, 300 instances, subsets of 10; then one instance leaves, then one joins.\n\n")
	fmt.Fprintf(w, "| policy | max/mean | min/mean | leave: moved | leave: needed | join: moved | join: needed |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range r.distinct("policy") {
		b := r.find(map[string]string{"policy": p})
		fmt.Fprintf(w, "| %s |", p)
		for _, u := range []string{"max/mean", "min/mean", "remove-moved", "remove-needed", "add-moved", "add-needed"} {
			fmt.Fprintf(w, " %s |", num(b.median(u)))
		}
		fmt.Fprintln(w)
	}
}

// crossZoneSummary writes BenchmarkCrossZone's share of calls out of the
// client's zone, a column per number of its zone's instances down.
func crossZoneSummary(w io.Writer, r *results) {
	downs := r.distinct("down")
	fmt.Fprintf(w, "\n## BenchmarkCrossZone\n\n9 instances, 3 in each of 3 zones, the client in zone a: calls that leave zone a, %%.\n\n| policy |")
	for _, d := range downs {
		fmt.Fprintf(w, " %s of zone a down |", d)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|", len(downs)))
	for _, p := range r.distinct("policy") {
		fmt.Fprintf(w, "| %s |", p)
		for _, d := range downs {
			fmt.Fprintf(w, " %s |", num(r.find(map[string]string{"policy": p, "down": d}).median("cross-zone-%")))
		}
		fmt.Fprintln(w)
	}
}

// subsetSVG draws each policy's connections per instance, the instances
// ranked from the most connected down, a line per policy, with the mean
// dashed. Ours are drawn last, on top.
func subsetSVG(c columns) []byte {
	const left, top, w, h = 70.0, 50.0, 640.0, 300.0
	n, hi := 1.0, 1.0
	var sum, count float64
	for _, vs := range c.values {
		n = max(n, float64(len(vs)))
		for _, v := range vs {
			hi = max(hi, v)
		}
	}
	if len(c.values) > 0 {
		for _, v := range c.values[0] {
			sum, count = sum+v, count+1
		}
	}
	hi = math.Ceil(hi/5) * 5
	x := func(rank float64) float64 { return left + w*rank/n }
	y := func(v float64) float64 { return top + h - h*v/hi }
	s := newSVG(int(left+w+280), int(top+h+60))
	s.text(left+w/2, 22, "middle", "Connections per instance: 300 clients, 300 instances, subsets of 10", `font-size="15" font-weight="bold"`)
	for v := 0.0; v <= hi; v += 5 {
		s.line(left, y(v), left+w, y(v), "#ddd", 1, "")
		s.text(left-6, y(v)+4, "end", num(v), `fill="#444"`)
	}
	for rank := 0.0; rank <= n; rank += 50 {
		s.line(x(rank), top, x(rank), top+h, "#ddd", 1, "")
		s.text(x(rank), top+h+16, "middle", num(rank), `fill="#444"`)
	}
	if count > 0 {
		mean := sum / count
		s.line(left, y(mean), left+w, y(mean), "#444", 1, "4,3")
		s.text(left+w-4, y(mean)-4, "end", "mean "+num(mean), `fill="#444"`)
	}
	s.text(left+w/2, top+h+36, "middle", "instances, from the most connected to the least", "")
	s.text(16, top+h/2, "middle", "client connections", fmt.Sprintf(`transform="rotate(-90 16 %.0f)"`, top+h/2))
	order := make([]int, len(c.policies))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return boolInt(strings.HasPrefix(c.policies[a], "lb_")) - boolInt(strings.HasPrefix(c.policies[b], "lb_"))
	})
	for _, i := range order {
		var pts [][2]float64
		for rank, v := range c.values[i] { // a step per instance
			pts = append(pts, [2]float64{x(float64(rank)), y(v)}, [2]float64{x(float64(rank + 1)), y(v)})
		}
		s.polyline(pts, palette[i%len(palette)])
	}
	s.line(left, top+h, left+w, top+h, "#444", 1, "")
	s.line(left, top, left, top+h, "#444", 1, "")
	for i, p := range c.policies {
		ly := top + 10 + 20*float64(i)
		s.line(left+w+15, ly-4, left+w+40, ly-4, palette[i%len(palette)], 3, "")
		weight := ""
		if strings.HasPrefix(p, "lb_") {
			weight = `font-weight="bold"`
		}
		s.text(left+w+46, ly, "start", p, weight)
	}
	s.text(left+w+15, top+10+20*float64(len(c.policies))+10, "start", "ours in bold", `fill="#444"`)
	return s.bytes()
}
