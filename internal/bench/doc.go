// Package bench measures terragate against the limit it fronts: each scenario runs a bare
// baseline and terragate in the same run, on loopback, with the real pieces (the gateway
// binary as its own process, the Terra emulator, SQLite files, the local PostgreSQL), and
// reports the ratio between them. Absolute times drift on a shared machine; ratios hold.
//
// Two ways in:
//
//	go test ./internal/bench -run '^$' -bench . -benchtime 3s   # Go benchmarks (ns/op, allocs)
//	go run ./internal/bench/load                                # the table, with percentiles
//
// The load program drives an open model (requests at a constant arrival rate, each
// latency counted from when it was due, so a slow answer cannot hide the requests it
// delayed) for percentiles, and a closed model (N requests always in flight) for
// throughput. Every measurement follows a warm-up and is repeated; the table shows the
// median round and the spread of the rounds.
//
// Nothing here asserts speed: figures are for people to read, and CI runs everything with
// tiny durations only so that it keeps working.
package bench
