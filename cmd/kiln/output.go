package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"kiln/builder"
	"kiln/manifest"
	"kiln/warmer"
)

// output is where a command's words go: structured log lines to stderr, or a
// live display when stderr is a terminal; the summary goes to stdout.
type output struct {
	log  *slog.Logger
	live *liveDisplay // warm's, on a terminal
	errw io.Writer

	mu    sync.Mutex
	steps *stepDisplay // build's, once started (stepView)
}

func newOutput(c *cli.Context) (*output, error) {
	errw := c.App.ErrWriter
	if errw == nil {
		errw = os.Stderr
	}
	tty := isTerminal(errw)
	switch c.String("progress") {
	case "auto":
	case "tty":
		tty = true
	case "plain":
		tty = false
	default:
		return nil, fmt.Errorf("--progress: want auto, tty or plain, got %q", c.String("progress"))
	}
	lo, err := logOptionsOf(c)
	if err != nil {
		return nil, err
	}
	o := &output{errw: errw}
	if tty {
		o.live = newLiveDisplay(errw)
		if !lo.levelSet {
			lo.level = slog.LevelWarn // the display shows progress; logs only for trouble
		}
	}
	o.log = lo.logger(errw)
	if o.live != nil {
		o.log = slog.New(&pausingHandler{inner: o.log.Handler(), out: o})
	}
	return o, nil
}

// stepView starts the build display on a terminal and returns its event
// function; nil when not on a terminal (the log tells the steps).
func (o *output) stepView(prefix string) func(builder.StepEvent) {
	if o.live == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.steps == nil {
		o.steps = newStepDisplay(o.errw)
		o.steps.start()
	}
	return o.steps.eventFor(prefix)
}

// stopSteps ends the build display, leaving the finished steps on screen.
func (o *output) stopSteps() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.steps != nil {
		o.steps.stop()
		o.steps = nil
	}
}

// clearDisplays wipes whatever live display is drawn, before a log line.
func (o *output) clearDisplays() {
	o.live.mu.Lock()
	o.live.clearLocked()
	o.live.mu.Unlock()
	o.mu.Lock()
	steps := o.steps
	o.mu.Unlock()
	if steps != nil {
		steps.mu.Lock()
		steps.clearLocked()
		steps.mu.Unlock()
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
}

func (o *output) start() {
	if o.live != nil {
		o.live.start()
	}
}

func (o *output) stop() {
	if o.live != nil {
		o.live.stop()
	}
}

// liveDisplay redraws one line per image in flight, with bytes and rate.
type liveDisplay struct {
	w      io.Writer
	mu     sync.Mutex
	rows   map[string]*row
	order  []string
	drawn  int
	quit   chan struct{}
	wg     sync.WaitGroup
	frames int
}

type row struct {
	ref     string
	bytes   int64
	total   int64
	started time.Time
	done    int
	failed  int
}

func newLiveDisplay(w io.Writer) *liveDisplay {
	return &liveDisplay{w: w, rows: map[string]*row{}, quit: make(chan struct{})}
}

func (d *liveDisplay) event(e warmer.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.rows[e.Ref]
	if !ok {
		r = &row{ref: e.Ref, started: time.Now()}
		d.rows[e.Ref] = r
		d.order = append(d.order, e.Ref)
	}
	switch e.Kind {
	case warmer.EventTotal:
		r.total += e.Total
	case warmer.EventBytes:
		r.bytes += e.Bytes
	case warmer.EventDone:
		r.done++
		if e.Result.Status == warmer.StatusFailed {
			r.failed++
		}
	}
}

func (d *liveDisplay) start() {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(150 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-d.quit:
				d.draw(true)
				return
			case <-t.C:
				d.draw(false)
			}
		}
	}()
}

func (d *liveDisplay) stop() {
	close(d.quit)
	d.wg.Wait()
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

func (d *liveDisplay) draw(final bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.clearLocked()
	d.frames++
	var b strings.Builder
	lines := 0
	for _, ref := range d.order {
		r := d.rows[ref]
		mark := spinner[d.frames%len(spinner)]
		if final {
			mark = "✔"
			if r.failed > 0 {
				mark = "✘"
			}
		}
		elapsed := time.Since(r.started).Seconds()
		rate := ""
		if elapsed > 0.2 && r.bytes > 0 && !final {
			rate = manifest.FormatBytes(int64(float64(r.bytes)/elapsed)) + "/s"
		}
		fmt.Fprintf(&b, "%s %-50s %10s / %-10s %s\n", mark, trim(ref, 50), manifest.FormatBytes(r.bytes), manifest.FormatBytes(r.total), rate)
		lines++
	}
	fmt.Fprint(d.w, b.String())
	d.drawn = lines
	if final {
		d.drawn = 0
	}
}

func (d *liveDisplay) clearLocked() {
	if d.drawn > 0 {
		fmt.Fprintf(d.w, "\x1b[%dA\x1b[J", d.drawn)
		d.drawn = 0
	}
}

// pausingHandler clears the live display before a log line so the two do
// not interleave.
type pausingHandler struct {
	inner slog.Handler
	out   *output
}

func (h *pausingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}
func (h *pausingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.clearDisplays()
	return h.inner.Handle(ctx, r)
}
func (h *pausingHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return &pausingHandler{inner: h.inner.WithAttrs(a), out: h.out}
}
func (h *pausingHandler) WithGroup(n string) slog.Handler {
	return &pausingHandler{inner: h.inner.WithGroup(n), out: h.out}
}

func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}

func shortDigest(d string) string {
	if i := strings.Index(d, ":"); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

// printWarmSummary prints the table a person reads at the end.
func printWarmSummary(w io.Writer, rep *warmer.Report) {
	res := append([]warmer.Result(nil), rep.Results...)
	sort.SliceStable(res, func(i, j int) bool {
		if res[i].Ref != res[j].Ref {
			return res[i].Ref < res[j].Ref
		}
		return res[i].Platform < res[j].Platform
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tPLATFORM\tDIGEST\tSTATUS\tDOWNLOADED\tSIZE\tTIME")
	for _, r := range res {
		status := string(r.Status)
		if r.Revalidated {
			status += " (checked)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.1fs\n", r.Ref, r.Platform, shortDigest(r.Digest), status, manifest.FormatBytes(r.Bytes), manifest.FormatBytes(r.Size), r.Duration.Seconds())
	}
	tw.Flush()
	for _, r := range res {
		switch {
		case r.Warning != "":
			fmt.Fprintf(w, "  warning: %s %s: %s\n", r.Ref, r.Platform, r.Warning)
		case r.Error != "":
			fmt.Fprintf(w, "  %s %s: %s\n", r.Ref, r.Platform, r.Error)
		}
	}
	fmt.Fprintf(w, "%d pulled, %d updated, %d fresh, %d failed; %s downloaded in %.1fs into %s\n",
		rep.Counts[warmer.StatusPulled], rep.Counts[warmer.StatusUpdated], rep.Counts[warmer.StatusFresh], rep.Counts[warmer.StatusFailed],
		manifest.FormatBytes(rep.Bytes), rep.Seconds, rep.CacheDir)
	if p := rep.Pruned; p != nil {
		fmt.Fprintf(w, "pruned %s and %s (%s), removed %s; %s kept\n", count(len(p.Entries), "entry", "entries"), count(p.Blobs, "blob", "blobs"),
			manifest.FormatBytes(p.Bytes), count(p.Temps, "temp file", "temp files"), count(p.Kept, "blob", "blobs"))
		if p.LayerCache+p.LayerCacheDropped > 0 {
			fmt.Fprintf(w, "layer cache: %s kept, %s past the TTL dropped\n", count(p.LayerCache, "entry", "entries"), count(p.LayerCacheDropped, "entry", "entries"))
		}
	}
}

func printVerifySummary(w io.Writer, dir string, v *warmer.VerifyReport) {
	for _, p := range v.Problems {
		fmt.Fprintf(w, "DAMAGED %s %s: %s\n", p.Digest, p.Ref, p.Msg)
	}
	fmt.Fprintf(w, "verified %s (%s) and %s in %s: %s, %s (%s), %s in progress\n",
		count(v.Blobs, "blob", "blobs"), manifest.FormatBytes(v.Bytes), count(v.Entries, "entry", "entries"), dir, count(len(v.Problems), "problem", "problems"),
		count(v.Temps, "leftover temp file", "leftover temp files"), manifest.FormatBytes(v.TempBytes), count(v.Writing, "write", "writes"))
	if v.LayerCache > 0 {
		fmt.Fprintf(w, "  layer cache (kiln build --cache): %s of those\n", count(v.LayerCache, "entry", "entries"))
	}
}

// writeReport writes the JSON report atomically (a CronJob's reader never
// sees half a file).
func writeReport(path string, rep *warmer.Report) error {
	if path == "" {
		return nil
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, append(data, '\n')); err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	return nil
}

// count is "1 blob" or "3 blobs": n with the noun that fits it.
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
