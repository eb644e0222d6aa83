package mcas

// IsRefused reports whether err is the API refusing the request itself
// (400 Bad Request): in practice the filter, the one part of a request the
// operator wrote (check reports it on the filter's line).
func IsRefused(err error) bool { return isRefused(err) }
