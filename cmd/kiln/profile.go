package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// startProfiles writes a CPU profile to the file KILN_CPUPROFILE names and
// an execution trace to KILN_TRACE's, for the command's whole run: where a
// build's time goes, for kiln's developers (go tool pprof, go tool trace).
// Neither is a flag: nothing a user needs. The returned function stops
// both and closes their files.
func startProfiles(getenv func(string) string, errw io.Writer) (stop func()) {
	var stops []func()
	if p := getenv("KILN_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err != nil {
			fmt.Fprintln(errw, "kiln: KILN_CPUPROFILE:", err)
		} else if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(errw, "kiln: KILN_CPUPROFILE:", err)
			f.Close()
		} else {
			stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
		}
	}
	if p := getenv("KILN_TRACE"); p != "" {
		if f, err := os.Create(p); err != nil {
			fmt.Fprintln(errw, "kiln: KILN_TRACE:", err)
		} else if err := trace.Start(f); err != nil {
			fmt.Fprintln(errw, "kiln: KILN_TRACE:", err)
			f.Close()
		} else {
			stops = append(stops, func() { trace.Stop(); f.Close() })
		}
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}
