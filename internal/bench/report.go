package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// columns are the report's headings, in the order cells gives a row's values.
var columns = []string{"scenario", "baseline", "terragate", "ratio", "p50", "p99", "allocs/op", "memory", "spread", "target", "met"}

// cells is a row's values under columns, "-" where it has none.
func (r Row) cells() []string {
	met := "no"
	switch {
	case r.Target == "":
		met = "" // nothing to meet
	case r.Met:
		met = "yes"
	}
	out := []string{r.Scenario, r.Baseline, r.Terragate, r.Ratio, r.P50, r.P99, r.Allocs, r.Memory, r.Spread, r.Target, met}
	for i, c := range out {
		if c == "" {
			out[i] = "-"
		}
	}
	return out
}

// WriteTable prints rows as an aligned table: the figures, the ratio the target speaks
// of, and whether the target was met.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(columns, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t"))
	}
	return tw.Flush()
}

// WriteMarkdown prints rows as a Markdown table, for the README.
func WriteMarkdown(w io.Writer, rows []Row) error {
	line := func(cells []string) string { return "| " + strings.Join(cells, " | ") + " |\n" }
	rule := make([]string, len(columns))
	for i := range rule {
		rule[i] = "---"
	}
	text := line(columns) + line(rule)
	for _, r := range rows {
		text += line(r.cells())
	}
	_, err := io.WriteString(w, text)
	return err
}
