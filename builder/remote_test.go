package builder

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestAddURL(t *testing.T) {
	body := "remote content\n"
	sum := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(body)))
	modified := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/files/tool.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Last-Modified", modified.Format(http.TimeFormat))
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	url := srv.URL + "/files/tool.txt"
	tests := []struct {
		name     string
		add      string
		wantPath string
		wantErr  bool
		wantIs   error
	}{
		{name: "into a folder", add: "ADD " + url + " /dl/", wantPath: "/dl/tool.txt"},
		{name: "as a file", add: "ADD " + url + " /renamed", wantPath: "/renamed"},
		{name: "checksum ok", add: "ADD --checksum=" + sum + " " + url + " /", wantPath: "/tool.txt"},
		{name: "checksum mismatch", add: "ADD --checksum=sha256:0000 " + url + " /", wantErr: true, wantIs: errChecksum},
		{name: "not found", add: "ADD " + srv.URL + "/missing /", wantErr: true},
		{name: "checksum on a local file", add: "ADD --checksum=" + sum + " Dockerfile /", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\n" + tt.add + "\n"})
			res, err := Build(context.Background(), Request{Context: dir, Platform: amd64},
				WithWorkDir(t.TempDir()), WithHTTPClient(srv.Client()))
			if tt.wantErr {
				if err == nil {
					res.Close()
					t.Fatal("no error")
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("err = %v, want %v", err, tt.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			var found *fileInfo
			for _, f := range listFiles(t, res.Image) {
				if f.Path == tt.wantPath {
					found = &f
				}
			}
			if found == nil || found.Mode != "0600" || found.Size != int64(len(body)) {
				t.Errorf("%s = %+v, want a 0600 file of %d bytes", tt.wantPath, found, len(body))
			}
		})
	}
}
