package run

import "embed"

// initFS holds the small init built for this architecture, when the
// Makefile built it (initbin/build.sh); see InitProgram.
//
//go:embed all:initbin/amd64
var initFS embed.FS

const initDir = "initbin/amd64"
