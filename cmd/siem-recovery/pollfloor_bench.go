//go:build followbench

package main

import "time"

// minPoll, in the build BenchmarkFollow makes (-tags followbench), lets a
// feed cycle every millisecond: 10,000 cycles in minutes rather than the
// 17 the shortest poll of a real build takes, the same code otherwise.
const minPoll = time.Millisecond
