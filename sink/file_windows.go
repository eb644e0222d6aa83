package sink

import (
	"fmt"
	"os"
	"syscall"
)

// fileIdentity names the file f is open on, for as long as it exists:
// its volume's serial number and its file index.
func fileIdentity(f *os.File) (string, error) {
	var d syscall.ByHandleFileInformation
	if err := syscall.GetFileInformationByHandle(syscall.Handle(f.Fd()), &d); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d:%d:%d", d.VolumeSerialNumber, d.FileIndexHigh, d.FileIndexLow), nil
}
