//go:build !amd64 && !arm64

package run

import "embed"

// initFS: no small init is built for this architecture; kiln starts itself.
var initFS embed.FS

const initDir = "initbin/none"
