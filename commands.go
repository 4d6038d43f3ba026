package main

import (
	"fmt"
	"io"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/buildinfo"
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

// runVersion prints which build this is: the module version, the Go toolchain and, when
// the binary was built from a checkout, the commit.
func runVersion(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("usage: terragate version (takes no arguments)")
	}
	return writeVersion(stdout, buildinfo.Read())
}

func writeVersion(stdout io.Writer, info buildinfo.Info) error {
	fmt.Fprintf(stdout, "terragate %s\n", info.Version)
	fmt.Fprintf(stdout, "go        %s\n", info.GoVersion)
	if info.Revision != "" {
		modified := ""
		if info.Modified {
			modified = " (with uncommitted changes)"
		}
		fmt.Fprintf(stdout, "commit    %s%s\n", info.Revision, modified)
	}
	if info.Time != "" {
		fmt.Fprintf(stdout, "committed %s\n", info.Time)
	}
	return nil
}
