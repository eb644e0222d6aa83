//go:build !followbench

package main

import "time"

// minPoll is the shortest --poll follow takes: a shorter one would ask the
// API many times a second for nothing.
const minPoll = 100 * time.Millisecond
