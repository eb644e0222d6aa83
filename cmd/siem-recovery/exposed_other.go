//go:build !unix

package main

import "io/fs"

// exposed is false where file modes do not say who may read a file
// (Windows keeps that in ACLs, which the mode bits do not reflect).
func exposed(fs.FileInfo) bool { return false }
