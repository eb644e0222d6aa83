package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The bundled example is what this command writes: a change to the
// generator or to the file by hand shows here (run go run
// ./scripts/make-example from the repository's root to rewrite it).
func TestExampleIsTheGeneratorsOutput(t *testing.T) {
	got, err := os.ReadFile(filepath.Join("..", "..", path))
	if err != nil {
		t.Fatal(err)
	}
	if want := exampleExport(); !bytes.Equal(got, want) {
		t.Fatalf("%s differs from what make-example writes: run go run ./scripts/make-example", path)
	}
}

// The bundled alerts are what this command writes, too.
func TestAlertsAreTheGeneratorsOutput(t *testing.T) {
	got, err := os.ReadFile(filepath.Join("..", "..", alertsPath))
	if err != nil {
		t.Fatal(err)
	}
	if want := exampleAlerts(); !bytes.Equal(got, want) {
		t.Fatalf("%s differs from what make-example writes: run go run ./scripts/make-example", alertsPath)
	}
}
