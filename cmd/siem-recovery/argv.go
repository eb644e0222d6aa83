package main

import (
	"strings"
	"unsafe"
)

// secretFlags are the flags whose value must not stay in the process title.
var secretFlags = []string{"token"}

// hideSecrets returns a copy of args for the program to use, then blanks
// the value of --token in args themselves. On Unix os.Args are the
// process's own argv memory, which ps and /proc/PID/cmdline show; blanking
// it keeps the token out of the process title (it was visible only for the
// moments before this ran: --token-file or MCAS_TOKEN avoid even that).
func hideSecrets(args []string) []string {
	kept := make([]string, len(args))
	for i, a := range args {
		kept[i] = strings.Clone(a)
	}
	for i := 1; i < len(args); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") || !isSecretFlag(name) {
			continue
		}
		if hasValue {
			blank(args[i], len(args[i])-len(value))
		} else if i+1 < len(args) {
			i++
			blank(args[i], 0)
		}
	}
	return kept
}

func isSecretFlag(name string) bool {
	for _, f := range secretFlags {
		if name == f {
			return true
		}
	}
	return false
}

// blank overwrites s from byte from on with '*'. s must be argv memory,
// which is writable and used by nothing else once hideSecrets copied it.
func blank(s string, from int) {
	if len(s) <= from {
		return
	}
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	for i := from; i < len(b); i++ {
		b[i] = '*'
	}
}
