package rootfs

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckName: every name starting with ".wh." is refused, whatever
// follows (whiteouts, opaque markers, AUFS metadata), and only the last
// path element counts; the error names the path.
func TestCheckName(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		wantErr bool
	}{
		{name: "whiteout", path: ".wh.passwd", wantErr: true},
		{name: "whiteout in a folder", path: "etc/.wh.passwd", wantErr: true},
		{name: "absolute", path: "/etc/.wh.passwd", wantErr: true},
		{name: "opaque marker", path: "a/.wh..wh..opq", wantErr: true},
		{name: "AUFS hardlink folder", path: ".wh..wh.plnk", wantErr: true},
		{name: "AUFS metadata", path: "x/.wh..wh.aufs", wantErr: true},
		{name: "bare prefix", path: ".wh.", wantErr: true},
		{name: "trailing slash", path: "d/.wh.x/", wantErr: true},
		{name: "plain", path: "etc/passwd"},
		{name: "prefix elsewhere", path: "etc/x.wh.passwd"},
		{name: "not quite the prefix", path: ".wh"},
		{name: "below a whiteout folder", path: ".wh..wh.plnk/123.456"},
		{name: "upper case", path: ".WH.passwd"},
		{name: "root", path: "/"},
		{name: "empty", path: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckName(tc.path)
			if (err != nil) != tc.wantErr {
				t.Fatalf("CheckName(%q) = %v, want error %v", tc.path, err, tc.wantErr)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrReservedName) || !strings.HasPrefix(err.Error(), tc.path+": ") {
				t.Errorf("CheckName(%q) = %q, want it to name the path and wrap ErrReservedName", tc.path, err)
			}
		})
	}
}
