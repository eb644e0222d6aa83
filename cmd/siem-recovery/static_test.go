package main

import (
	"debug/elf"
	"runtime"
	"testing"
)

// The README's build (CGO_ENABLED=0) yields a static binary: no program
// interpreter (the dynamic loader) and no shared library to load, so it
// runs on any Linux and in a scratch or distroless image. Without
// CGO_ENABLED=0 the same build links libc dynamically.
func TestBinaryIsStatic(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the ELF check is for Linux binaries")
	}
	f, err := elf.Open(binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary names a program interpreter: it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Fatalf("the binary needs shared libraries %v (%v)", libs, err)
	}
}
