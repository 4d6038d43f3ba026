package main

import (
	"fmt"
	"io"

	"github.com/terragate/terragate/graph"
)

// runSchema prints the GraphQL schema (the SDL of schema.graphql), for client code
// generators pointed at a binary rather than at the repository.
func runSchema(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("usage: terragate schema (takes no arguments)")
	}
	_, err := io.WriteString(stdout, graph.SDL())
	return err
}
