package mcas

// SetMaxAnswer lowers the byte cap of one answer, so that a test can pass
// it without sending 128 MiB.
func SetMaxAnswer(s *Source, n int64) { s.maxAnswer = n }
