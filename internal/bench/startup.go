package bench

import (
	"context"
	"fmt"
	"time"
)

// StartupRows starts terragate Cfg.Rounds times (at least three) on an existing, seeded
// database and reports how long each took from exec to its first ready answer, and its
// resident memory a second later, idle.
func (r *Runner) StartupRows(ctx context.Context) ([]Row, error) {
	// The connectedUsers database, seeded already when that group ran.
	path, err := r.usersSQLite(ctx)
	if err != nil {
		return nil, err
	}
	var ready, rss []float64
	for round := range max(3, r.Cfg.Rounds) {
		r.progress("start-up on an existing database, round %d", round+1)
		gw, err := r.startGateway(ctx, path, nil)
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Second)
		m, err := gw.RSS()
		stopErr := gw.Stop()
		if err != nil {
			return nil, err
		}
		if stopErr != nil {
			return nil, fmt.Errorf("stop: %w", stopErr)
		}
		ready = append(ready, float64(gw.Ready)/float64(time.Millisecond))
		rss = append(rss, float64(m))
	}
	ms := func(v float64) string { return fmt.Sprintf("%.0f ms", v) }
	startup, idle := median(ready), median(rss)
	return []Row{
		{
			Scenario:  "start-up to ready, existing database",
			Terragate: ms(startup), Spread: spread(ready, ms),
			Target: "< 300 ms", Met: startup < 300,
		},
		{
			Scenario:  "resident memory, idle after start",
			Terragate: fmtBytes(idle), Memory: fmtBytes(idle), Spread: spread(rss, fmtBytes),
			Target: "< 50 MB", Met: idle < 50<<20,
		},
	}, nil
}
