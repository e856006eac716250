package buildall

import (
	"context"
	"errors"
	"fmt"
	"sync"

	specs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"kiln/builder/runner"
	"kiln/platform"
)

// Run builds what plan says, a bounded number of platforms at a time, then
// stitches and publishes each image whose required platforms all built.
// Failures are in the Report; the error is for a plan Run cannot use or a
// canceled ctx.
func (c *Coordinator) Run(ctx context.Context, plan *Plan) (*Report, error) {
	if plan == nil {
		return nil, fmt.Errorf("%w: no plan", ErrInvalid)
	}
	rep := &Report{Images: make([]ImageResult, len(plan.Images))}
	outs := make([][]*runner.Outcome, len(plan.Images))
	var logMu sync.Mutex
	var g errgroup.Group // not WithContext: one failure cancels nothing independent
	g.SetLimit(c.o.jobs)
	var cancels []context.CancelCauseFunc
	defer func() {
		for _, cancel := range cancels {
			cancel(nil)
		}
	}()
	for i, ip := range plan.Images {
		rep.Images[i] = newImageResult(ip)
		outs[i] = make([]*runner.Outcome, len(ip.Targets))
		if ip.Blocked() != nil {
			continue // every platform already has its status
		}
		// The image's own context: a failed required platform stops its
		// siblings, whose image will have no index anyway.
		ictx, cancel := context.WithCancelCause(ctx)
		cancels = append(cancels, cancel)
		for j, t := range ip.Targets {
			if t.Err != nil {
				continue
			}
			g.Go(func() error {
				outs[i][j] = c.build(ictx, cancel, ip, t, &rep.Images[i].Platforms[j], &logMu)
				return nil
			})
		}
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		releaseAll(outs)
		return rep, err
	}
	c.publishAll(ctx, plan, rep, outs)
	return rep, nil
}

// newImageResult fills in the platforms whose fate the plan decided.
func newImageResult(ip ImagePlan) ImageResult {
	im := ip.Image
	res := ImageResult{Name: im.Name, Tags: im.Tags, Platforms: make([]PlatformResult, len(ip.Targets))}
	blocked := ip.Blocked()
	for j, t := range ip.Targets {
		pr := PlatformResult{Platform: t.Platform, Required: t.Required, Mode: t.Execution.Mode, Err: t.Err}
		switch {
		case t.Err != nil && t.Required:
			pr.Status = StatusFailed
		case t.Err != nil:
			pr.Status = StatusDropped
		case blocked != nil:
			pr.Status = StatusSkipped
			pr.Err = fmt.Errorf("images.%s %s: %w", im.Name, platform.Format(t.Platform), ErrCanceled)
		}
		res.Platforms[j] = pr
	}
	if blocked != nil {
		failed := platformsOf(res.Platforms, func(pr PlatformResult) bool { return pr.Status == StatusFailed })
		res.Err = fmt.Errorf("%w (%s) before any work: nothing built, pushed or written", ErrRequiredFailed, platform.FormatAll(failed))
	}
	return res
}

// build runs one target through the runner and records the result in pr.
// A required platform's failure cancels its image's other builds.
func (c *Coordinator) build(ctx context.Context, cancel context.CancelCauseFunc, ip ImagePlan, t Target, pr *PlatformResult, logMu *sync.Mutex) *runner.Outcome {
	im := ip.Image
	label := fmt.Sprintf("images.%s %s", im.Name, platform.Format(t.Platform))
	if errors.Is(context.Cause(ctx), ErrCanceled) {
		pr.Status, pr.Err = StatusSkipped, fmt.Errorf("%s: %w", label, ErrCanceled)
		return nil
	}
	job := runner.Job{Image: im.Name, Platform: t.Platform, Request: c.request(im, t.Platform), Tags: im.Tags}
	if c.o.progress != nil {
		job.Progress = c.o.progress(im.Name, t.Platform)
	}
	if !im.Push {
		job.Tags = nil // a runner that pushes must not push what is not to be pushed
	}
	var pw *prefixWriter
	if c.o.logw != nil {
		pw = &prefixWriter{mu: logMu, w: c.o.logw, prefix: fmt.Sprintf("[%s %s] ", im.Name, platform.Format(t.Platform))}
		job.Log = pw
		fmt.Fprintf(pw, "building (%s, %s)\n", c.runner.Name(), t.Execution.Mode)
	}
	start := c.o.now()
	out, err := c.runner.Run(ctx, job)
	pr.Duration = c.o.now().Sub(start)
	c.finish(ctx, pr, t, label, out, err, pw)
	if pr.Status == StatusFailed {
		cancel(ErrCanceled)
	}
	if pr.Status != StatusBuilt {
		_ = out.Close()
		return nil
	}
	return out
}

// finish sets pr's status from the runner's answer and logs it.
func (c *Coordinator) finish(ctx context.Context, pr *PlatformResult, t Target, label string, out *runner.Outcome, err error, pw *prefixWriter) {
	switch {
	case err == nil && out == nil:
		err = errors.New("the runner returned no image")
	case err != nil && errors.Is(context.Cause(ctx), ErrCanceled):
		pr.Status, pr.Err = StatusSkipped, fmt.Errorf("%s: %w", label, ErrCanceled)
	}
	switch {
	case pr.Status == StatusSkipped:
	case err != nil && t.Required:
		pr.Status, pr.Err = StatusFailed, fmt.Errorf("%s: %w", label, err)
	case err != nil:
		pr.Status, pr.Err = StatusDropped, fmt.Errorf("%s: %w", label, err)
	default:
		pr.Status, pr.Digest, pr.Size, pr.Where, pr.Emulated = StatusBuilt, out.Digest, out.Size, out.Where, out.Emulated
		pr.CacheHits, pr.CacheMisses = out.CacheHits, out.CacheMisses
	}
	c.o.log.Debug("platform done", "image", label, "status", string(pr.Status), "duration", pr.Duration)
	if pw == nil {
		return
	}
	if pr.Err != nil {
		fmt.Fprintf(pw, "%s: %v\n", pr.Status, pr.Err)
	} else {
		fmt.Fprintf(pw, "built %s in %.1fs\n", pr.Digest, pr.Duration.Seconds())
	}
	_ = pw.Flush()
}

func releaseAll(outs [][]*runner.Outcome) {
	for _, list := range outs {
		for _, o := range list {
			_ = o.Close()
		}
	}
}

// platformsOf lists the results' platforms, for messages.
func platformsOf(prs []PlatformResult, keep func(PlatformResult) bool) []specs.Platform {
	var out []specs.Platform
	for _, pr := range prs {
		if keep(pr) {
			out = append(out, pr.Platform)
		}
	}
	return out
}
