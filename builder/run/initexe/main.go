// Command initexe is kiln's RUN step init (and namespace probe) on its own:
// package run and the little it imports, without the rest of kiln. The
// Makefile builds it and embeds it in kiln (builder/run/initbin): kiln then
// starts it for every RUN step instead of re-executing its whole self,
// whose packages (registry, git and Kubernetes clients, Dockerfile front
// end) take some 30 ms of CPU to initialize before the step's init can do
// anything; this program is ready in a few. See run.InitProgram.
package main

import (
	"fmt"
	"os"

	"kiln/builder/run"
)

func main() {
	run.MaybeInit() // the package's init has taken over already when kiln started this
	fmt.Fprintln(os.Stderr, "kiln-init: this is the init kiln starts for its RUN steps; it is not run by hand")
	os.Exit(2)
}
