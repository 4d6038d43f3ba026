package groupcommit

import (
	"context"
	"testing"
)

// BenchmarkSubmit is the committer's own cost per item, 32 in flight, with an Apply that does
// nothing: what grouping adds to a write before the database sees it.
func BenchmarkSubmit(b *testing.B) {
	c := New(func(context.Context, []*int) {}, Options{})
	defer c.Close()
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.Submit(context.Background(), new(int)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
