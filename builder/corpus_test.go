package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/platform"
)

var update = flag.Bool("update", false, "rewrite testdata/*/want.json")

// caseRequest is testdata/<case>/request.json: the build's inputs beyond the
// Dockerfile and context/, and context entries git cannot hold.
type caseRequest struct {
	Args     map[string]string `json:"args,omitempty"`
	Target   string            `json:"target,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Platform string            `json:"platform,omitempty"`
	Symlinks map[string]string `json:"symlinks,omitempty"` // context path -> target
	Modes    map[string]string `json:"modes,omitempty"`    // context path -> octal mode
}

// want is testdata/<case>/want.json.
type want struct {
	Error   string      `json:"error,omitempty"`
	Config  *wantConfig `json:"config,omitempty"`
	History []string    `json:"history,omitempty"`
	Files   []fileInfo  `json:"files,omitempty"`
}

type wantConfig struct {
	OS           string              `json:"os"`
	Architecture string              `json:"architecture"`
	Variant      string              `json:"variant,omitempty"`
	Author       string              `json:"author,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
	Volumes      map[string]struct{} `json:"Volumes,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
	Shell        []string            `json:"Shell,omitempty"`
	Healthcheck  *v1.HealthConfig    `json:"Healthcheck,omitempty"`
	OnBuild      []string            `json:"OnBuild,omitempty"`
}

// TestCorpus builds every testdata/<case> and compares the file tree, config
// and history with want.json (go test -update rewrites them).
func TestCorpus(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*/Dockerfile")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	bases := fixtures(t)
	for _, df := range dirs {
		dir := filepath.Dir(df)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			got := runCase(t, dir, bases)
			data, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			data = append(data, '\n')
			golden := filepath.Join(dir, "want.json")
			if *update {
				if err := os.WriteFile(golden, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wantData, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if !bytes.Equal(data, wantData) {
				t.Errorf("%s differs:\n%s", golden, data)
			}
		})
	}
}

// runCase builds one case and describes the outcome.
func runCase(t *testing.T, dir string, bases fakeBases) want {
	req := readRequest(t, dir)
	p := amd64
	if req.Platform != "" {
		p = platform.MustParse(req.Platform)
	}
	ctxDir := makeContext(t, dir, req)
	res, err := Build(context.Background(), Request{
		Context: ctxDir, Platform: p, BuildPlatform: amd64, BuildArgs: req.Args, Target: req.Target,
		Labels: req.Labels, Reproducible: true,
	}, WithBaseImages(bases), WithWorkDir(t.TempDir()))
	if err != nil {
		return want{Error: strings.ReplaceAll(err.Error(), ctxDir, "<context>")}
	}
	defer res.Close()
	cf, err := res.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	w := want{Config: &wantConfig{
		OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant, Author: cf.Author,
		Env: c.Env, Cmd: c.Cmd, Entrypoint: c.Entrypoint, WorkingDir: c.WorkingDir, User: c.User,
		ExposedPorts: c.ExposedPorts, Labels: c.Labels, Volumes: c.Volumes, StopSignal: c.StopSignal,
		Shell: c.Shell, Healthcheck: c.Healthcheck, OnBuild: c.OnBuild,
	}}
	for _, h := range cf.History {
		line := h.CreatedBy
		if h.EmptyLayer {
			line += " (empty)"
		}
		w.History = append(w.History, line)
	}
	w.Files = listFiles(t, res.Image)
	return w
}

func readRequest(t *testing.T, dir string) caseRequest {
	var req caseRequest
	data, err := os.ReadFile(filepath.Join(dir, "request.json"))
	if os.IsNotExist(err) {
		return req
	}
	if err == nil {
		err = json.Unmarshal(data, &req)
	}
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// makeContext copies the case's context/ and Dockerfile into a temp folder
// with fixed modes (0644 files, 0755 folders, request.json's exceptions),
// so that a checkout's umask does not change the result.
func makeContext(t *testing.T, dir string, req caseRequest) string {
	out := t.TempDir()
	src := filepath.Join(dir, "context")
	if _, err := os.Stat(src); err == nil {
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			dst := filepath.Join(out, rel)
			if d.IsDir() {
				if err := os.MkdirAll(dst, 0o755); err != nil {
					return err
				}
				return os.Chmod(dst, 0o755)
			}
			data, err := os.ReadFile(p)
			if err == nil {
				err = os.WriteFile(dst, data, 0o644)
			}
			if err != nil {
				return err
			}
			return os.Chmod(dst, 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "Dockerfile"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for p, target := range req.Symlinks {
		if err := os.Symlink(target, filepath.Join(out, p)); err != nil {
			t.Fatal(err)
		}
	}
	for p, m := range req.Modes {
		mode, err := strconv.ParseUint(m, 8, 32)
		if err == nil {
			err = os.Chmod(filepath.Join(out, p), fs.FileMode(mode))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}
