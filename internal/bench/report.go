package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable prints rows as an aligned table: the figures, the ratio the target speaks
// of, and whether the target was met.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tbaseline\tterragate\tratio\tp50\tp99\tallocs/op\tmemory\tspread\ttarget\tmet")
	for _, r := range rows {
		met := "no"
		if r.Met {
			met = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.Scenario, dash(r.Baseline), dash(r.Terragate), dash(r.Ratio), dash(r.P50), dash(r.P99),
			dash(r.Allocs), dash(r.Memory), dash(r.Spread), dash(r.Target), met)
	}
	return tw.Flush()
}

// WriteMarkdown prints rows as a Markdown table, for the README.
func WriteMarkdown(w io.Writer, rows []Row) error {
	fmt.Fprintln(w, "| scenario | baseline | terragate | ratio | p50 | p99 | allocs/op | memory | spread | target | met |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		met := "no"
		if r.Met {
			met = "yes"
		}
		if _, err := fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Scenario, dash(r.Baseline), dash(r.Terragate), dash(r.Ratio), dash(r.P50), dash(r.P99),
			dash(r.Allocs), dash(r.Memory), dash(r.Spread), dash(r.Target), met); err != nil {
			return err
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
