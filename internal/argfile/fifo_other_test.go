//go:build !unix

package argfile

import "errors"

func makeFIFO(string) error { return errors.New("no mkfifo on this system") }
