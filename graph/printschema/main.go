// Command printschema writes graph.SDL to the file it is given; go generate runs it.
package main

import (
	"fmt"
	"os"

	"github.com/terragate/terragate/graph"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: printschema FILE")
		os.Exit(2)
	}
	if err := os.WriteFile(os.Args[1], []byte(graph.SDL()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "printschema:", err)
		os.Exit(1)
	}
}
