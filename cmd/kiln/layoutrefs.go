package main

import (
	"fmt"
	"io"
	"strings"

	"kiln/manifest"
)

// printPlatformRefs writes, after a "wrote oci:DIR" line, the names the
// layout files each platform image of refName under (see
// manifest.PlatformRefName), with the umoci command for the first: umoci
// takes one image per name, never an index. Nothing when there are none.
func printPlatformRefs(w io.Writer, indent, dir, refName string) {
	l, err := manifest.OpenExistingLayout(dir)
	if err != nil {
		return
	}
	names, err := l.PlatformRefNames(refName)
	if err != nil || len(names) == 0 {
		return
	}
	fmt.Fprintf(w, "%sper platform: %s (umoci unpack --rootless --image %s:%s BUNDLE)\n",
		indent, strings.Join(names, ", "), dir, names[0])
}
