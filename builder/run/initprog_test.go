package run

import (
	"strings"
	"testing"
)

// TestInitProgramStamp: an embedded init is started only by a binary of
// its own build; a plain build (no stamp) starts itself.
func TestInitProgramStamp(t *testing.T) {
	defer func(s string) { initStamp = s }(initStamp)
	initStamp = "not-this-build"
	if path, err := loadInit(); err == nil {
		t.Fatalf("loaded %s for a binary of another stamp", path)
	} else if !strings.Contains(err.Error(), "another build") && !strings.Contains(err.Error(), "no embedded init") {
		t.Fatalf("error %q should say why", err)
	}
	initStamp = "" // go test's: the test binary is the init (TestMain)
	if path, why := InitProgram(); path != "/proc/self/exe" || !strings.Contains(why, "this program") {
		t.Fatalf("without a stamp: %s (%s), want /proc/self/exe", path, why)
	}
}
