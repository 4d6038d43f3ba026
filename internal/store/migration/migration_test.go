package migration

import (
	"errors"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/terragate/terragate/internal/store"
)

func TestVersions(t *testing.T) {
	fsys := fstest.MapFS{
		"00003_leases.sql": {},
		"00001_init.sql":   {},
		"README.md":        {},
	}
	got, err := Versions(fsys)
	if err != nil || !slices.Equal(got, []int64{1, 3}) {
		t.Errorf("Versions = %v, %v; want [1 3]", got, err)
	}
	if _, err := Versions(fstest.MapFS{"init.sql": {}}); err == nil {
		t.Error("Versions accepted a file without a version")
	}
	if _, err := Versions(fstest.MapFS{}); err == nil {
		t.Error("Versions accepted no migrations")
	}
}

func TestCheck(t *testing.T) {
	embedded := []int64{1, 3}
	for _, tc := range []struct {
		applied []int64
		ok      bool
	}{
		{[]int64{1, 3}, true},
		{[]int64{3, 1}, true},
		{[]int64{1, 3, 4}, true}, // a newer build migrated first (rolling deploy)
		{nil, false},
		{[]int64{1}, false},
		{[]int64{3}, false}, // a version missed in between
	} {
		err := Check(tc.applied, embedded)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, store.ErrSchemaOutdated)) {
			t.Errorf("Check(%v, %v) = %v; want ok %v", tc.applied, embedded, err, tc.ok)
		}
	}
}
