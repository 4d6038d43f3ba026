package graph_test

import (
	"testing"

	"github.com/terragate/terragate/graph"
	"github.com/terragate/terragate/internal/limit"
)

const backfillMutation = `mutation($u: ID!, $since: Time!, $until: Time, $types: [String!], $actAs: String) {
  requestBackfill(userId: $u, since: $since, until: $until, types: $types, actAs: $actAs)
}`

func TestRequestBackfill(t *testing.T) {
	s := startWithService(t, graph.Options{})
	alice, err := s.emu.Connect("OURA", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if r := s.postAs(token(t, "alice"), `mutation { syncConnections { userId } }`, nil); len(r.Errors) > 0 {
		t.Fatal(r.raw)
	}
	history := func() (n int) {
		for _, r := range s.emu.Requests() {
			if r.Query.Get("to_webhook") == "true" {
				n++
			}
		}
		return n
	}
	vars := func(kv ...any) map[string]any {
		m := map[string]any{"u": alice.UserID, "since": "2026-06-01T00:00:00Z", "until": "2026-07-01T00:00:00Z"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	code := func(r response) any {
		if len(r.Errors) != 1 {
			return nil
		}
		return r.Errors[0].Extensions["code"]
	}

	if r := s.postAs(token(t, "alice"), backfillMutation, vars("types", []string{"sleep"})); len(r.Errors) > 0 || string(r.Data) != `{"requestBackfill":true}` {
		t.Fatalf("own connection: %s", r.raw)
	}
	if history() != 1 {
		t.Errorf("%d history requests, want 1", history())
	}
	if r := s.postAs(token(t, "mallory"), backfillMutation, vars()); code(r) != graph.CodeNotFound {
		t.Errorf("someone else's: %s", r.raw)
	}
	if r := s.postAs(testServiceKey, backfillMutation, vars("types", []string{"daily"})); len(r.Errors) > 0 {
		t.Errorf("service: %s", r.raw)
	}
	if r := s.postAs(testServiceKey, backfillMutation, vars("actAs", "mallory")); code(r) != graph.CodeNotFound {
		t.Errorf("service acting for another end user: %s", r.raw)
	}
	before := history()
	for _, c := range []struct {
		name, field string
		vars        map[string]any
	}{
		{"since after until", "since", vars("since", "2026-08-01T00:00:00Z")},
		{"over 1,825 days", "since", vars("since", "2020-01-01T00:00:00Z")},
		{"unknown type", "types", vars("types", []string{"steps"})},
	} {
		r := s.postAs(token(t, "alice"), backfillMutation, c.vars)
		if code(r) != graph.CodeBadUserInput || r.Errors[0].Extensions["field"] != c.field {
			t.Errorf("%s: %s", c.name, r.raw)
		}
	}
	if history() != before {
		t.Error("bad input reached Terra")
	}
}

// requestBackfill calls Terra: it is charged to the end user's Terra budget.
func TestRequestBackfillChargesTheTerraBudget(t *testing.T) {
	s := start(t, graph.Options{}, func(r *graph.Resolver) { r.TerraLimit = limit.New(limit.Config{Rate: 1e-6, Burst: 1}) })
	alice, _ := s.emu.Connect("OURA", "alice")
	v := map[string]any{"u": alice.UserID, "since": "2026-06-01T00:00:00Z"}
	if r := s.postAs(token(t, "alice"), backfillMutation, v); len(r.Errors) > 0 && r.Errors[0].Extensions["code"] == graph.CodeRateLimited {
		t.Fatalf("first: %s", r.raw)
	}
	if r := s.postAs(token(t, "alice"), backfillMutation, v); len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != graph.CodeRateLimited {
		t.Errorf("second: %s", r.raw)
	}
}
