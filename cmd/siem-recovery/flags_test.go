package main

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestEveryFlagHasItsEnvVar: every flag of every command can be set as
// SIEM_RECOVERY_<NAME> (SPEC §2; the README says so of every flag).
func TestEveryFlagHasItsEnvVar(t *testing.T) {
	for _, cmd := range newApp(io.Discard, io.Discard).Commands {
		for _, f := range cmd.Flags {
			name := f.Names()[0]
			want := "SIEM_RECOVERY_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
			d, ok := f.(cli.DocGenerationFlag)
			if !ok || !slices.Contains(d.GetEnvVars(), want) {
				t.Errorf("%s --%s: no %s", cmd.Name, name, want)
			}
		}
	}
}
