//go:build !unix && !windows

package sink

import (
	"context"
	"fmt"
	"os"
)

// openAppend opens path for appending, created 0600, refusing a symbolic
// link at the path.
func openAppend(_ context.Context, _ <-chan struct{}, path string, _ func()) (*os.File, error) {
	if info, err := os.Lstat(path); err == nil && info.Mode()&os.ModeSymlink != 0 {
		return nil, asLink(path, fmt.Errorf("%s is a link", path))
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}

func openRead(path string) (*os.File, error) { return os.Open(path) }

func openWrite(path string) (*os.File, error) { return os.OpenFile(path, os.O_WRONLY, 0) }

// fileIdentity is unknown here: a crash's batch is then written again
// whole.
func fileIdentity(*os.File) (string, error) { return "", nil }

// fileLinks is unknown here: the file is taken to be where it was.
func fileLinks(*os.File) (uint64, error) { return 1, nil }

// infoIdentity is unknown here.
func infoIdentity(os.FileInfo) string { return "" }
