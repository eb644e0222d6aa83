package sink

import (
	"context"
	"fmt"
	"os"
	"syscall"
)

// openAppend opens path for appending, created 0600, refusing a symbolic
// link (or junction) at the path: a link planted there must not make the
// run append to a file of the link's choosing. A pipe client's open fails
// at once without a server: there is nothing to wait for.
func openAppend(_ context.Context, _ <-chan struct{}, path string, _ func()) (*os.File, error) {
	if info, err := os.Lstat(path); err == nil && info.Mode()&(os.ModeSymlink|os.ModeIrregular) != 0 {
		return nil, asLink(path, fmt.Errorf("%s is a link", path))
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}

// openRead opens path for reading.
func openRead(path string) (*os.File, error) { return os.Open(path) }

// openWrite opens the existing file at path for writing (to cut it).
func openWrite(path string) (*os.File, error) { return os.OpenFile(path, os.O_WRONLY, 0) }

// fileIdentity names the file f is open on, for as long as it exists:
// its volume's serial number and its file index.
func fileIdentity(f *os.File) (string, error) {
	var d syscall.ByHandleFileInformation
	if err := syscall.GetFileInformationByHandle(syscall.Handle(f.Fd()), &d); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d:%d:%d", d.VolumeSerialNumber, d.FileIndexHigh, d.FileIndexLow), nil
}

// fileLinks is how many names the file f is open on has.
func fileLinks(f *os.File) (uint64, error) {
	var d syscall.ByHandleFileInformation
	if err := syscall.GetFileInformationByHandle(syscall.Handle(f.Fd()), &d); err != nil {
		return 0, err
	}
	return uint64(d.NumberOfLinks), nil
}

// infoIdentity is unknown from a directory listing here ("").
func infoIdentity(os.FileInfo) string { return "" }
