package test

import (
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// displayContext is a FROM scratch build with busybox and a RUN that
// prints "tick 1", waits 3 s, prints "tick 2".
func displayContext(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, needBusybox(t), filepath.Join(dir, "busybox"), 0o755)
	writeContext(t, dir, map[string]string{
		"Dockerfile": `FROM scratch
COPY busybox /bin/busybox
ENV GREETING=hi
RUN ["/bin/busybox", "sh", "-c", "echo tick 1; /bin/busybox sleep 3; echo tick 2"]
COPY Dockerfile /Dockerfile
`,
	})
	return dir
}

// ptyRun runs kiln on a pseudo-terminal and returns what it drew, with
// when each piece arrived, and when it exited.
type ptyChunk struct {
	at   time.Time
	text string
}

func ptyRun(t *testing.T, dir string, args ...string) (chunks []ptyChunk, exited time.Time, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd, _, _ := kilnCmd(t, ctx, runOpts{dir: dir, env: []string{"TERM=xterm", "COLUMNS=120"}}, args...)
	cmd.Stdout, cmd.Stderr = nil, nil
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatalf("starting kiln on a pty: %v", err)
	}
	defer f.Close()
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				mu.Lock()
				chunks = append(chunks, ptyChunk{at: time.Now(), text: string(buf[:n])})
				mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	err = cmd.Wait()
	exited = time.Now()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	return chunks, exited, exitCode(err)
}

// firstSeen is when text first appeared on the screen.
func firstSeen(chunks []ptyChunk, text string) (time.Time, bool) {
	var all strings.Builder
	for _, c := range chunks {
		all.WriteString(c.text)
		if strings.Contains(all.String(), text) {
			return c.at, true
		}
	}
	return time.Time{}, false
}

func screen(chunks []ptyChunk) string {
	var all strings.Builder
	for _, c := range chunks {
		all.WriteString(c.text)
	}
	return all.String()
}

// TestBuildDisplayTerminal: on a terminal kiln build shows each step as it
// runs, a running RUN's output under it while it runs, then the summary.
func TestBuildDisplayTerminal(t *testing.T) {
	dir := displayContext(t)
	chunks, exited, code := ptyRun(t, dir, "build", "--context", ".", "--output", "oci:"+filepath.Join(t.TempDir(), "out"), "--work-dir", t.TempDir())
	all := screen(chunks)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, all)
	}
	run, ok := firstSeen(chunks, "[stage-0 4/5] RUN")
	if !ok {
		t.Fatalf("the RUN step's line never appeared:\n%s", all)
	}
	tick, ok := firstSeen(chunks, "tick 1")
	if !ok {
		t.Fatalf("the RUN's output never appeared:\n%s", all)
	}
	// The step sleeps 3 s after "tick 1": both must be on screen well
	// before kiln ends, that is while the step runs.
	if exited.Sub(run) < 2*time.Second || exited.Sub(tick) < 2*time.Second {
		t.Errorf("the RUN line (%.1fs before the end) and its output (%.1fs before) must appear while it runs:\n%s",
			exited.Sub(run).Seconds(), exited.Sub(tick).Seconds(), all)
	}
	for _, want := range []string{"✔ [stage-0 2/5] COPY busybox /bin/busybox", "✔ [stage-0 4/5] RUN", "[stage-0 5/5] COPY Dockerfile /Dockerfile", "built image for linux/"} {
		if !strings.Contains(all, want) {
			t.Errorf("the screen lacks %q:\n%s", want, all)
		}
	}
	summary, _ := firstSeen(chunks, "built image for")
	if done, _ := firstSeen(chunks, "✔ [stage-0 5/5]"); summary.Before(done) {
		t.Errorf("the summary came before the last step ended:\n%s", all)
	}
}

// TestBuildDisplayPlain: piped, kiln build logs one line when each
// instruction starts, with its Dockerfile line, the RUN's output, and one
// line when it ends with its time.
func TestBuildDisplayPlain(t *testing.T) {
	dir := displayContext(t)
	r := runKilnOpts(t, runOpts{dir: dir}, "build", "--context", ".", "--output", "oci:"+filepath.Join(t.TempDir(), "out"), "--work-dir", t.TempDir())
	mustExit(t, r, 0)
	want := []struct {
		step string
		line int
	}{{"[stage-0 1/5] FROM scratch", 1}, {"[stage-0 2/5] COPY busybox /bin/busybox", 2}, {"[stage-0 3/5] ENV GREETING=hi", 3},
		{"[stage-0 4/5] RUN", 4}, {"[stage-0 5/5] COPY Dockerfile /Dockerfile", 5}}
	lines := strings.Split(r.stderr, "\n")
	for _, w := range want {
		starts, ends := 0, 0
		re := regexp.MustCompile(`msg="` + regexp.QuoteMeta(w.step) + `.*" line=` + regexp.QuoteMeta(itoa(w.line)) + `\b`)
		endRe := regexp.MustCompile(`msg="step done" step="` + regexp.QuoteMeta(w.step[:strings.Index(w.step, "]")+1]) + `" line=` + itoa(w.line) + ` seconds=`)
		for _, l := range lines {
			if re.MatchString(l) {
				starts++
			}
			if endRe.MatchString(l) {
				ends++
			}
		}
		if starts != 1 || ends != 1 {
			t.Errorf("%q (line %d): %d start lines and %d end lines, want one each:\n%s", w.step, w.line, starts, ends, r.stderr)
		}
	}
	if !strings.Contains(r.stderr, `msg="RUN output" stage=0 out="tick 1"`) {
		t.Errorf("the RUN's output is not in the log:\n%s", r.stderr)
	}
}

// TestBuildAllDisplayTerminal: build-all on a terminal shows each
// platform's steps behind its name.
func TestBuildAllDisplayTerminal(t *testing.T) {
	dir := displayContext(t)
	toml := filepath.Join(dir, "build.toml")
	writeFile(t, toml, `[images.tick]
context = "."
platforms = ["linux/amd64"]
output = "oci:out/tick"
`)
	chunks, exited, code := ptyRun(t, dir, "build-all", "--config", toml, "--work-dir", t.TempDir(), "--cache-dir", t.TempDir())
	all := screen(chunks)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, all)
	}
	tick, ok := firstSeen(chunks, "tick 1")
	if _, hdr := firstSeen(chunks, "[tick linux/amd64] [stage-0 4/5] RUN"); !ok || !hdr || exited.Sub(tick) < 2*time.Second {
		t.Errorf("the platform's RUN and its output must show while it runs:\n%s", all)
	}
	if !strings.Contains(all, "IMAGE") || !strings.Contains(all, "index tick") {
		t.Errorf("no summary:\n%s", all)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
