package run

import "embed"

// initFS holds the small init built for this architecture, when the
// Makefile built it (initbin/build.sh); see InitProgram.
//
//go:embed all:initbin/arm64
var initFS embed.FS

const initDir = "initbin/arm64"
