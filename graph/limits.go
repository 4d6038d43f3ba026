package graph

import (
	"context"
	"fmt"

	"github.com/99designs/gqlgen/graphql"
	"github.com/terragate/terragate/graph/model"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// Query shape limits. terragate's deepest real operation (a session with its Terra user)
// nests 3 levels and uses no aliases, so these leave room for any honest client while
// making deep or alias-amplified queries cheap to refuse.
// Introspection nests by design (GraphiQL's query reaches 14 levels through its ofType
// chain) and is allowed only where PLAYGROUND is, so it gets a limit of its own.
const (
	maxDepth              = 8
	maxIntrospectionDepth = 16
	maxAliases            = 15
)

// Codes of the shape refusals.
const (
	CodeQueryTooDeep   = "QUERY_TOO_DEEP"
	CodeTooManyAliases = "TOO_MANY_ALIASES"
)

// shapeLimit refuses operations nested deeper than maxDepth or using more than maxAliases
// aliases, before anything runs. Fragments count where they are spread.
type shapeLimit struct{}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = shapeLimit{}

func (shapeLimit) ExtensionName() string                          { return "ShapeLimit" }
func (shapeLimit) Validate(schema graphql.ExecutableSchema) error { return nil }

func (shapeLimit) MutateOperationContext(ctx context.Context, rc *graphql.OperationContext) *gqlerror.Error {
	if rc.Operation == nil {
		return nil
	}
	w := walker{fragments: rc.Doc.Fragments}
	w.walk(rc.Operation.SelectionSet, 1, false, map[string]bool{})
	switch {
	case w.depth > maxDepth:
		return refusal(CodeQueryTooDeep, fmt.Sprintf("the operation nests %d levels deep; at most %d are allowed", w.depth, maxDepth))
	case w.introspectionDepth > maxIntrospectionDepth:
		return refusal(CodeQueryTooDeep, fmt.Sprintf("the introspection query nests %d levels deep; at most %d are allowed", w.introspectionDepth, maxIntrospectionDepth))
	case w.aliases > maxAliases:
		return refusal(CodeTooManyAliases, fmt.Sprintf("the operation uses %d aliases; at most %d are allowed", w.aliases, maxAliases))
	}
	return nil
}

func refusal(code, msg string) *gqlerror.Error {
	return &gqlerror.Error{Message: msg, Extensions: map[string]any{"code": code}}
}

type walker struct {
	fragments          ast.FragmentDefinitionList
	depth              int // deepest level outside introspection
	introspectionDepth int // deepest level under __schema or __type
	aliases            int
}

// walk records the deepest field level and counts aliases. A fragment already being walked
// is not entered again (validation refuses cycles, but the walker must not rely on it).
func (w *walker) walk(set ast.SelectionSet, level int, introspection bool, inFragment map[string]bool) {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			in := introspection || s.Name == "__schema" || s.Name == "__type"
			if in {
				w.introspectionDepth = max(w.introspectionDepth, level)
			} else {
				w.depth = max(w.depth, level)
			}
			if s.Alias != "" && s.Alias != s.Name {
				w.aliases++
			}
			w.walk(s.SelectionSet, level+1, in, inFragment)
		case *ast.InlineFragment:
			w.walk(s.SelectionSet, level, introspection, inFragment)
		case *ast.FragmentSpread:
			if inFragment[s.Name] {
				continue
			}
			if def := w.fragments.ForName(s.Name); def != nil {
				inFragment[s.Name] = true
				w.walk(def.SelectionSet, level, introspection, inFragment)
				delete(inFragment, s.Name)
			}
		}
		if w.depth > maxDepth || w.introspectionDepth > maxIntrospectionDepth || w.aliases > maxAliases {
			return
		}
	}
}

// complexity gives each field its cost: most fields cost 1; fields that call Terra or scan
// a user's connections cost more, so that the complexity limit bounds real work.
func complexity() ComplexityRoot {
	var c ComplexityRoot
	c.Mutation.CreateWidgetSession = func(child int, _ *model.CreateWidgetSessionInput, _ *string) int { return 10 + child }
	c.Mutation.SyncConnections = func(child int, _ *string) int { return 20 + child }
	c.Mutation.DisconnectUser = func(child int, _ string, _ *string) int { return 10 + child }
	c.Query.Providers = func(child int) int { return 5 + child }
	c.Query.ConnectedUsers = func(child int, _ *bool, _ *string) int { return 5 + child }
	c.WidgetSession.AlreadyConnected = func(child int) int { return 5 + child }
	c.WidgetSession.TerraUser = func(child int) int { return 2 + child }
	// Admin pages cost their size: a page of 100 fits the limit, a page of 1000 does not.
	page := func(first *int) int {
		if first == nil {
			return 20
		}
		return max(1, *first)
	}
	c.Query.Users = func(child int, first *int, _ *string, _ *string, _ *string, _ *model.ConnectionStatus) int {
		return page(first) + child
	}
	c.Query.WebhookEvents = func(child int, first *int, _ *string, _ *string, _ *string, _ *string) int {
		return page(first) + child
	}
	c.Query.AuditLog = func(child int, first *int, _ *string, _ *string, _ *string, _ *string) int {
		return page(first) + child
	}
	c.Query.RelayDeliveries = func(child int, _ *string, _ *model.RelayDeliveryStatus, _ *string, first *int, _ *string) int {
		return page(first) + child
	}
	return c
}
