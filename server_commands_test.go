package main

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/terragate/terragate/internal/buildinfo"
)

func TestSchemaCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"schema"}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile("graph/schema.graphql")
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != string(file) {
		t.Error("terragate schema does not print schema.graphql")
	}
	s, gerr := gqlparser.LoadSchema(&ast.Source{Name: "stdout", Input: stdout.String()})
	if gerr != nil || s.Types["TerraUser"] == nil || s.Query.Fields.ForName("connectedUsers") == nil {
		t.Errorf("the printed schema does not load as terragate's: %v", gerr)
	}
	if err := run(context.Background(), []string{"schema", "extra"}, func(string) string { return "" }, &stdout, &stderr); err == nil {
		t.Error("terragate schema took an argument it ignores")
	}
}

func TestVersionCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"version"}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(stdout.String(), "\n")
	if lines[0] != "terragate "+buildinfo.Read().Version || !strings.Contains(stdout.String(), runtime.Version()) {
		t.Errorf("terragate version printed:\n%s", stdout.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
}
