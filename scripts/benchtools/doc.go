// Package benchtools holds the small programs scripts/bench.sh measures
// with: gen writes activities in the API's shape, recv is a TCP receiver that
// discards, rawsend is the minimal writer of pre-formatted lines (the
// baseline), and peakrss runs a command and reports its peak memory.
package benchtools
