// Command demo is README's first command (`make demo`): it starts a local
// registry (Debian's docker-registry, on 127.0.0.1, storage under .cache/demo),
// pushes sample multi-platform base images, and runs `kiln warm` on them
// twice — cold, then with everything cached — and `kiln warm --verify`, so a
// new user sees what warm does without any network or Kubernetes.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"

	"kiln/test/harness"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root, err := filepath.Abs(filepath.Join(".cache", "demo"))
	if err != nil {
		return err
	}
	os.RemoveAll(root)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	reg, err := harness.StartRegistry(ctx, filepath.Join(root, "registry"), os.Stderr)
	if err != nil {
		return err
	}
	defer reg.Close()
	say("started a local registry at %s (storage in %s)", reg.Addr, reg.Dir)

	fixtures, err := harness.PushStandardFixtures(ctx, reg.Addr)
	if err != nil {
		return fmt.Errorf("pushing sample images: %w", err)
	}
	var refs []string
	for _, f := range fixtures {
		say("pushed %-40s %s", f.Ref, strings.Join(f.Platforms, ","))
		if len(f.Platforms) > 1 && f.Platforms[0] == "linux/amd64" {
			refs = append(refs, f.Ref) // the ones that have both demo platforms
		}
	}
	cfg := filepath.Join(root, "build.toml")
	if err := os.WriteFile(cfg, []byte(demoConfig(root, refs)), 0o644); err != nil {
		return err
	}
	say("wrote %s", cfg)

	steps := [][]string{
		{"warm", "--config", cfg},
		{"warm", "--config", cfg},
		{"warm", "--config", cfg, "--verify"},
	}
	titles := []string{
		"kiln warm: cold cache, every image for linux/amd64 and linux/arm64 (shared layers are fetched once)",
		"kiln warm again: everything is cached, no network",
		"kiln warm --verify: rehash every blob, check every reference",
	}
	for i, args := range steps {
		say("%s\n$ bin/kiln %s", titles[i], strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, filepath.Join("bin", "kiln"), args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("kiln %s: %w", strings.Join(args, " "), err)
		}
	}
	say("the cache is a plain OCI image layout: %s/cache (try: skopeo inspect --raw oci:%s/cache:%s)", root, root, refs[0])
	return nil
}

func demoConfig(root string, refs []string) string {
	quoted := make([]string, len(refs))
	for i, r := range refs {
		quoted[i] = fmt.Sprintf("%q", r)
	}
	return fmt.Sprintf(`# Written by make demo.
[cache]
dir = %q
jobs = 8

[warm]
platforms = ["linux/amd64", "linux/arm64"]
extra = [%s]
`, filepath.Join(root, "cache"), strings.Join(quoted, ", "))
}

func say(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}
