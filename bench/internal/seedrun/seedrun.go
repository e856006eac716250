// Package seedrun is what the benchmark's seed programs (bench/seed,
// bench/buildseed, bench/runseed) share: a docker-registry process kept up
// while the calling script needs it, and the files through which a seed
// tells the script what it pushed.
package seedrun

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"kiln/test/harness"
)

// Serve starts docker-registry with its config and data in dir and its log
// appended to logPath (standard error when empty), then runs seed against
// its address. When seed succeeds the registry stays up until SIGINT or
// SIGTERM or, with watchStdin, until standard input closes (the script holds
// it open). Failures end the program.
func Serve(dir, logPath string, watchStdin bool, seed func(ctx context.Context, addr string) error) {
	var regLog io.Writer = os.Stderr
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		regLog = f
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	reg, err := harness.StartRegistry(ctx, dir, regLog)
	if err != nil {
		log.Fatalf("starting registry: %v", err)
	}
	err = seed(ctx, reg.Addr)
	if err == nil {
		<-ctx.Done()
	}
	if cerr := reg.Close(); cerr != nil {
		log.Printf("closing registry: %v", cerr)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// Publish tells the script what the seed made: the plain-text values of
// lists, one file each, in the folder listsDir (when not empty), then d as
// JSON in the file ready (when not empty: the script waits for it) and on
// standard output. Files are written atomically.
func Publish(d any, ready, listsDir string, lists map[string]string) error {
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if listsDir != "" {
		if err := os.MkdirAll(listsDir, 0o755); err != nil {
			return err
		}
		for f, content := range lists {
			if err := writeAtomic(filepath.Join(listsDir, f), []byte(content)); err != nil {
				return err
			}
		}
	}
	if ready != "" {
		if err := writeAtomic(ready, append(out, '\n')); err != nil {
			return err
		}
	}
	fmt.Println(string(out))
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
