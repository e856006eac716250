package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"kiln/builder"
)

// stepDisplay is kiln build's live view on a terminal, in the manner of
// BuildKit's: a finished step is printed once, with its time (or CACHED);
// the steps running are redrawn with their elapsed time, the last lines of
// a running RUN's output under them.
type stepDisplay struct {
	w     io.Writer
	width int // the terminal's columns

	mu      sync.Mutex
	running []*runningStep
	drawn   int
	quit    chan struct{}
	wg      sync.WaitGroup
	frames  int
}

type runningStep struct {
	prefix string // "[name platform] " when several builds share the screen
	ev     builder.StepEvent
	start  time.Time
	tail   []string
}

// tailLines is how many lines of a running step's output stay on screen.
const tailLines = 6

func newStepDisplay(w io.Writer) *stepDisplay {
	width := 100
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 20 {
			width = cols
		}
	}
	return &stepDisplay{w: w, width: width, quit: make(chan struct{})}
}

// eventFor is the event function of one build (builder.WithProgress);
// prefix names it when several share the screen.
func (d *stepDisplay) eventFor(prefix string) func(builder.StepEvent) {
	return func(e builder.StepEvent) { d.event(prefix, e) }
}

// line fits a display line to the terminal (a wrapped line would break
// the redraw).
func (d *stepDisplay) line(mark, prefix, label, state string) string {
	room := d.width - len([]rune(prefix)) - len(state) - 5
	return fmt.Sprintf("%s %s%s  %s\n", mark, prefix, fit(label, max(room, 10)), state)
}

func (d *stepDisplay) event(prefix string, e builder.StepEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch e.Kind {
	case builder.StepStarted:
		d.running = append(d.running, &runningStep{prefix: prefix, ev: e, start: time.Now()})
	case builder.StepOutput:
		if r := d.find(prefix, e); r != nil {
			r.tail = append(r.tail, e.Text)
			if len(r.tail) > tailLines {
				r.tail = r.tail[len(r.tail)-tailLines:]
			}
		}
	case builder.StepDone:
		r := d.find(prefix, e)
		if r == nil {
			return
		}
		d.running = deleteStep(d.running, r)
		d.clearLocked()
		state := fmt.Sprintf("%.1fs", e.Elapsed.Seconds())
		mark := "✔"
		switch {
		case e.Err != nil:
			mark, state = "✘", "FAILED after "+state
		case e.Cached:
			state = "CACHED"
		}
		fmt.Fprint(d.w, d.line(mark, prefix, e.Label(), state))
		if e.Err != nil {
			for _, l := range r.tail {
				fmt.Fprintf(d.w, "    │ %s\n", fit(l, d.width-7))
			}
		}
		d.drawLocked()
	}
}

func (d *stepDisplay) find(prefix string, e builder.StepEvent) *runningStep {
	for i := len(d.running) - 1; i >= 0; i-- {
		r := d.running[i]
		if r.prefix == prefix && r.ev.Stage == e.Stage && r.ev.Index == e.Index && r.ev.Line == e.Line {
			return r
		}
	}
	return nil
}

func deleteStep(s []*runningStep, r *runningStep) []*runningStep {
	out := s[:0]
	for _, x := range s {
		if x != r {
			out = append(out, x)
		}
	}
	return out
}

func (d *stepDisplay) start() {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-d.quit:
				d.mu.Lock()
				d.clearLocked()
				d.mu.Unlock()
				return
			case <-t.C:
				d.mu.Lock()
				d.clearLocked()
				d.drawLocked()
				d.mu.Unlock()
			}
		}
	}()
}

func (d *stepDisplay) stop() {
	close(d.quit)
	d.wg.Wait()
}

// drawLocked draws the running steps; d.mu is held and nothing is drawn.
func (d *stepDisplay) drawLocked() {
	d.frames++
	var b strings.Builder
	lines := 0
	for i, r := range d.running {
		b.WriteString(d.line(spinner[d.frames%len(spinner)], r.prefix, r.ev.Label(), fmt.Sprintf("%.1fs", time.Since(r.start).Seconds())))
		lines++
		if i == len(d.running)-1 || d.running[i+1].prefix != r.prefix {
			for _, l := range r.tail {
				fmt.Fprintf(&b, "    │ %s\n", fit(l, d.width-7))
				lines++
			}
		}
	}
	fmt.Fprint(d.w, b.String())
	d.drawn = lines
}

func (d *stepDisplay) clearLocked() {
	if d.drawn > 0 {
		fmt.Fprintf(d.w, "\x1b[%dA\x1b[J", d.drawn)
		d.drawn = 0
	}
}

// fit cuts s to n runes, marking the cut; tabs become spaces.
func fit(s string, n int) string {
	s = strings.ReplaceAll(s, "\t", "    ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
