package buildall

import (
	"os"
	"testing"

	"kiln/builder/run"
)

// TestMain lets RUN steps work in this test binary: run.Run re-executes it
// as the step's init, which MaybeInit takes over.
func TestMain(m *testing.M) {
	run.MaybeInit()
	os.Exit(m.Run())
}
