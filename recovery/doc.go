// Package recovery holds the domain of siem-recovery: the Window the MCAS
// system alert names, the Activity records pulled from a Source, the Cursor
// that says where a recovery stands, and the Replayer loop that moves
// activities from a Source to a Sink and records its progress in a
// Checkpoint only after the Sink has accepted them.
//
// Sources, sinks and the checkpoint store live in their own packages and
// implement the small interfaces declared here; cmd/siem-recovery wires them.
package recovery
