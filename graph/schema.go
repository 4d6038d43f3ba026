package graph

//go:generate go run ./printschema schema.graphql

import (
	"strings"

	"github.com/vektah/gqlparser/v2/formatter"
)

// sdlHeader opens the printed schema: GraphQL comments, which every schema reader skips.
const sdlHeader = `# terragate's GraphQL schema, printed from graph/schema/*.graphqls by go generate: the
# file client code generators read. DO NOT EDIT.

`

// SDL is the whole schema in GraphQL's schema language, descriptions included, printed from
// the schema the server executes: types and directives sorted by name, so the output
// changes only when the schema does. `terragate schema` prints it, and go generate writes
// it to graph/schema.graphql for client code generators.
func SDL() string {
	var b strings.Builder
	formatter.NewFormatter(&b, formatter.WithIndent("  ")).FormatSchema(NewExecutableSchema(Config{}).Schema())
	// The formatter runs definitions together; a blank line after each makes the file
	// readable. A definition ends with a closing brace or, for scalars and unions, on its
	// one line, the only lines that start in the first column besides descriptions.
	var out strings.Builder
	out.WriteString(sdlHeader)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	for i, line := range lines {
		out.WriteString(line + "\n")
		if i < len(lines)-1 && (line == "}" || strings.HasPrefix(line, "scalar ") || strings.HasPrefix(line, "union ")) {
			out.WriteString("\n")
		}
	}
	return out.String()
}
