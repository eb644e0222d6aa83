package graph

// SetMaxAnswer lowers the bytes one answer may hold, for a test that
// sends a larger one without sending 128 MiB.
func SetMaxAnswer(s *Source, n int64) { s.maxAnswer = n }
