package postgres

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/terragate/terragate/internal/store"
	"github.com/terragate/terragate/internal/store/postgres/pgtest"
)

// BenchmarkApplyDataEvent measures the ingest of 2 KB data events with one relay destination,
// 32 in flight: through the group commit, and one transaction each (the core's path, which
// every other delivery takes).
func BenchmarkApplyDataEvent(b *testing.B) {
	body := make([]byte, 2048)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	var n atomic.Int64
	for _, mode := range []string{"group", "alone"} {
		b.Run(mode, func(b *testing.B) {
			d := openURL(b, pgtest.NewSchema(b))
			apply := d.ApplyWebhook
			if mode == "alone" {
				apply = d.coreStore.ApplyWebhook
			}
			b.SetParallelism(16) // 32 in flight on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					key := "bench:" + strconv.FormatInt(n.Add(1), 10)
					dl := store.Delivery{
						DedupeKey: key, TraceID: key, SignedAt: time.Now(), ReceivedAt: time.Now(),
						Event: store.Event{Kind: store.EventIgnored, Type: "activity"},
						Relay: &store.RelayEvent{Type: "activity", TraceID: key, Body: body, Destinations: []string{"backend"}},
					}
					if out, err := apply(b.Context(), dl); err != nil || out.Duplicate {
						b.Fatalf("apply: %v, %+v", err, out)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
