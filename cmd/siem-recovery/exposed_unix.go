//go:build unix

package main

import "io/fs"

// exposed tells whether users other than the owner may read the file
// info describes: any group or other permission bit counts, since a secret
// file only its owner uses needs none.
func exposed(info fs.FileInfo) bool {
	return info.Mode().Perm()&0o077 != 0
}
