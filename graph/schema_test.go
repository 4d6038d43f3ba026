package graph

import (
	"os"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
)

// TestSchemaFileIsCurrent fails when schema.graphql, which client code generators read, no
// longer matches the schema the server executes.
func TestSchemaFileIsCurrent(t *testing.T) {
	file, err := os.ReadFile("schema.graphql")
	if err != nil {
		t.Fatal(err)
	}
	want := SDL()
	if string(file) != want {
		got, wantLines := strings.Split(string(file), "\n"), strings.Split(want, "\n")
		for i := range min(len(got), len(wantLines)) {
			if got[i] != wantLines[i] {
				t.Fatalf("schema.graphql is stale at line %d: %q, want %q; run go generate ./...", i+1, got[i], wantLines[i])
			}
		}
		t.Fatalf("schema.graphql is stale (%d lines, want %d); run go generate ./...", len(got), len(wantLines))
	}
}

// TestSDLIsTheSchema reads the printed schema back as a client tool would and checks that it
// has every type, field, argument and enum value, each with the description the server's
// schema gives it.
func TestSDLIsTheSchema(t *testing.T) {
	printed, err := gqlparser.LoadSchema(&ast.Source{Name: "schema.graphql", Input: SDL()})
	if err != nil {
		t.Fatalf("the printed schema does not load: %v", err)
	}
	served := NewExecutableSchema(Config{}).Schema()
	types := 0
	for name, def := range served.Types {
		if def.BuiltIn {
			continue
		}
		types++
		got := printed.Types[name]
		if got == nil {
			t.Errorf("type %s is missing", name)
			continue
		}
		if got.Kind != def.Kind || got.Description != def.Description {
			t.Errorf("type %s: %s %q, want %s %q", name, got.Kind, got.Description, def.Kind, def.Description)
		}
		for _, f := range def.Fields {
			pf := got.Fields.ForName(f.Name)
			if pf == nil || pf.Description != f.Description || pf.Type.String() != f.Type.String() {
				t.Errorf("%s.%s differs: %+v", name, f.Name, pf)
				continue
			}
			for _, a := range f.Arguments {
				if pa := pf.Arguments.ForName(a.Name); pa == nil || pa.Description != a.Description || pa.Type.String() != a.Type.String() {
					t.Errorf("%s.%s(%s) differs", name, f.Name, a.Name)
				}
			}
		}
		for _, v := range def.EnumValues {
			if pv := got.EnumValues.ForName(v.Name); pv == nil || pv.Description != v.Description {
				t.Errorf("%s.%s differs", name, v.Name)
			}
		}
	}
	if types < 10 || printed.Subscription == nil || printed.Mutation == nil {
		t.Errorf("only %d types, subscription %v, mutation %v: is this the whole schema?", types, printed.Subscription != nil, printed.Mutation != nil)
	}
}
