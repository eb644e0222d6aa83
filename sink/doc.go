// Package sink delivers recovered activities to the SIEM: it formats each
// activity the way the MCAS SIEM agent does (CEF, or the activity's JSON as
// the source returned it), optionally behind an RFC 5424 or RFC 3164 syslog
// header, and writes it to stdout, a file, or a syslog receiver over TCP,
// TLS, UDP or RELP.
//
// A Sink returned by Open implements recovery.Sink: Send returns only once
// the receiver holds the whole batch. For a file that means written and
// fsynced; for TCP and TLS it means the receiver read the batch to its end
// and closed its side of the connection (see docs/delivery.md for the
// guarantee and its cost); for RELP, that the receiver acknowledged every
// message. UDP is at most once, and paced. A receiver that is down is
// retried until it is back; one that refuses our TLS setup is a
// configuration error, not retried.
package sink
