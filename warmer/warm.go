package warmer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"kiln/manifest"
	"kiln/platform"
)

// run is the state of one Warm call.
type run struct {
	ctx    context.Context // the whole run's; shared downloads use it
	w      *Warmer
	layout *manifest.Layout
	sem    *semaphore.Weighted
	start  time.Time
	// readOnly, if set, says why this process may not write to the cache:
	// what the cache holds is reported, what it lacks fails with it.
	readOnly error

	mu      sync.Mutex
	flights map[v1.Hash]*flight    // downloads under way, by digest
	full    *manifest.NoSpaceError // the first a pull failed with: the volume is full
	// running counts download goroutines: Warm returns only after every one
	// has ended and removed its temporary file.
	running sync.WaitGroup
}

// flight is one blob download that every image needing the blob waits for.
// It is cancelled when the last of them stops waiting, so that a failed
// image's other layers stop filling the disk.
type flight struct {
	done    chan struct{}
	n       int64
	err     error
	waiters int
	cancel  context.CancelFunc
}

// group is one reference with the platforms wanted of it.
type group struct {
	ref   string
	plats []specs.Platform
}

// Warm makes every item present in the cache. It returns a report with one
// result per item; the error is only for failures of the cache itself (a
// failed pull is a failed result, and Report.OK is false).
func (w *Warmer) Warm(ctx context.Context, items []Item) (*Report, error) {
	l, unlock, readOnly, err := w.openShared(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	r := &run{ctx: ctx, w: w, layout: l, sem: semaphore.NewWeighted(int64(w.o.jobs)), start: w.o.now(), flights: map[v1.Hash]*flight{}, readOnly: readOnly}
	if readOnly != nil {
		w.o.log.Warn("this user may not write to the cache: what it holds is reported, what it lacks fails", "cache", l.Dir(), "why", readOnly.Error())
	} else {
		// Before any download: on a full volume, killed writers'
		// leftovers are what must go first.
		r.removeDeadTemps()
		r.repairModes()
	}

	groups := groupItems(items)
	results := make([][]Result, len(groups))
	g := new(errgroup.Group)
	g.SetLimit(w.o.jobs)
	for i, gr := range groups {
		g.Go(func() error {
			results[i] = r.warmRef(ctx, gr)
			return nil
		})
	}
	g.Wait()
	// Every image has its answer; downloads nobody waits for any more were
	// cancelled. Their temporary files go before Warm returns (and the
	// process exits).
	r.running.Wait()

	rep := &Report{CacheDir: l.Dir(), Started: r.start, Counts: map[Status]int{}}
	if r.full != nil {
		rep.DiskFull = r.full.Error()
	}
	for _, rs := range results {
		for _, res := range rs {
			rep.Results = append(rep.Results, res)
			rep.Counts[res.Status]++
			rep.Bytes += res.Bytes
		}
	}
	rep.Seconds = time.Since(r.start).Seconds()
	return rep, ctx.Err()
}

// groupItems merges items by reference, keeping first-seen order and
// dropping duplicate platforms.
func groupItems(items []Item) []group {
	var out []group
	at := map[string]int{}
	for _, it := range items {
		i, ok := at[it.Ref]
		if !ok {
			i = len(out)
			at[it.Ref] = i
			out = append(out, group{ref: it.Ref})
		}
		dup := false
		for _, p := range out[i].plats {
			dup = dup || platform.Equal(p, it.Platform)
		}
		if !dup {
			out[i].plats = append(out[i].plats, platform.Normalize(it.Platform))
		}
	}
	return out
}

// refState is what the cache knows of one reference before this run.
type refState struct {
	entry  manifest.Entry
	found  bool
	index  *v1.IndexManifest // kiln's index of the cached platforms
	have   map[string]v1.Descriptor
	intact bool // every wanted platform present with all its blobs
}

func (r *run) warmRef(ctx context.Context, gr group) []Result {
	start := time.Now()
	r.w.emit(Event{Kind: EventStart, Ref: gr.ref})
	fail := func(err error) []Result {
		r.noteFull(err)
		out := make([]Result, len(gr.plats))
		for i, p := range gr.plats {
			out[i] = r.done(Result{Ref: gr.ref, Platform: platform.Format(p), Status: StatusFailed, Error: manifest.Describe(err), Duration: time.Since(start)})
		}
		return out
	}
	ref, err := r.w.o.client.ParseReference(gr.ref)
	if err != nil {
		return fail(fmt.Errorf("bad reference %q: %w", gr.ref, err))
	}
	st, err := r.state(ref, gr.plats)
	if err != nil {
		return fail(err)
	}
	if st.intact && (!r.needsCheck(ref, st) || r.readOnly != nil) {
		return r.fromCache(gr, ref, st, false, start)
	}
	if r.readOnly != nil {
		return fail(r.readOnly)
	}
	if st.intact {
		desc, _, err := r.w.o.client.Head(ctx, ref)
		if err == nil && desc.Digest == st.entry.SourceDigest {
			if err := r.touch(ctx, ref, desc.Digest); err != nil {
				return fail(err)
			}
			return r.fromCache(gr, ref, st, true, start)
		}
		if err != nil {
			// Some registries answer HEAD badly; a GET decides.
			r.w.o.log.Warn("revalidation HEAD failed, trying GET", "ref", gr.ref, "err", err)
		}
		return r.pullOrKeep(ctx, gr, ref, st, start)
	}
	return r.pull(ctx, gr, ref, st, start)
}

// pullOrKeep pulls an entry that may have moved; if the registry cannot be
// reached, the cached image stays in use and the result carries a warning:
// the cache still serves builds, which is what warm promises.
func (r *run) pullOrKeep(ctx context.Context, gr group, ref name.Reference, st refState, start time.Time) []Result {
	res := r.pullQuiet(ctx, gr, ref, st, start)
	for _, x := range res {
		if x.Status != StatusFailed {
			return r.report(res)
		}
	}
	kept := r.fromCacheQuiet(gr, ref, st, false, start)
	for i := range kept {
		kept[i].Warning = "could not revalidate, kept the cached image: " + res[i].Error
	}
	return r.report(kept)
}

// needsCheck: a tag entry older than max-age under --refresh.
func (r *run) needsCheck(ref name.Reference, st refState) bool {
	if !r.w.o.refresh {
		return false
	}
	if _, pinned := ref.(name.Digest); pinned {
		return false
	}
	return r.w.o.now().Sub(st.entry.Checked) >= r.w.o.maxAge
}

// state reads what the cache holds for ref.
func (r *run) state(ref name.Reference, plats []specs.Platform) (refState, error) {
	var st refState
	e, found, err := r.layout.Lookup(ref)
	if err != nil || !found {
		return st, err
	}
	st.entry, st.found = e, true
	idx, err := r.layout.ReadIndexBlob(e.Desc.Digest)
	if err != nil {
		// A damaged entry is pulled again, not trusted.
		r.w.o.log.Warn("cache entry unreadable, pulling again", "ref", ref.String(), "err", err)
		st.found = false
		return st, nil
	}
	st.index = idx
	st.have = map[string]v1.Descriptor{}
	st.intact = true
	for _, p := range plats {
		d, err := platform.Select(p, idx.Manifests)
		if err != nil || !r.complete(d) {
			st.intact = false
			continue
		}
		st.have[platform.Format(p)] = d
	}
	return st, nil
}

// complete reports whether a manifest and every blob it names are stored
// with the right sizes. It stats; Verify rehashes.
func (r *run) complete(d v1.Descriptor) bool {
	if !r.layout.HasBlob(d.Digest, d.Size) {
		return false
	}
	data, err := r.layout.ReadBlob(d.Digest)
	if err != nil {
		return false
	}
	kids, err := manifest.Children(d.MediaType, data)
	if err != nil {
		return false
	}
	for _, k := range kids {
		if !r.layout.HasBlob(k.Digest, k.Size) {
			return false
		}
	}
	return true
}

func (r *run) fromCache(gr group, ref name.Reference, st refState, revalidated bool, start time.Time) []Result {
	return r.report(r.fromCacheQuiet(gr, ref, st, revalidated, start))
}

// report announces finished results.
func (r *run) report(res []Result) []Result {
	for i := range res {
		res[i] = r.done(res[i])
	}
	return res
}

func (r *run) fromCacheQuiet(gr group, ref name.Reference, st refState, revalidated bool, start time.Time) []Result {
	out := make([]Result, len(gr.plats))
	for i, p := range gr.plats {
		d := st.have[platform.Format(p)]
		out[i] = (Result{
			Ref: gr.ref, Key: manifest.CacheKey(ref), Platform: platform.Format(p), Digest: d.Digest.String(),
			Status: StatusFresh, Revalidated: revalidated, Size: r.imageSize(d), Duration: time.Since(start),
		})
	}
	return out
}

func (r *run) imageSize(d v1.Descriptor) int64 {
	data, err := r.layout.ReadBlob(d.Digest)
	if err != nil {
		return 0
	}
	kids, _ := manifest.Children(d.MediaType, data)
	var n int64
	for _, k := range kids {
		n += k.Size
	}
	return n
}

func (r *run) done(res Result) Result {
	r.w.emit(Event{Kind: EventDone, Ref: res.Ref, Result: &res})
	attrs := []any{"ref", res.Ref, "platform", res.Platform, "status", string(res.Status), "bytes", res.Bytes, "seconds", round(res.Duration.Seconds())}
	if res.Digest != "" {
		attrs = append(attrs, "digest", res.Digest)
	}
	if res.Warning != "" {
		r.w.o.log.Warn("warmed with a warning", append(attrs, "warning", res.Warning)...)
	} else if res.Error != "" {
		r.w.o.log.Error("warm failed", append(attrs, "err", res.Error)...)
	} else {
		r.w.o.log.Info("warmed", attrs...)
	}
	return res
}

func round(f float64) float64 { return float64(int64(f*1000)) / 1000 }

// touch renews an entry's checked time after a HEAD confirmed its digest.
func (r *run) touch(ctx context.Context, ref name.Reference, src v1.Hash) error {
	key := manifest.CacheKey(ref)
	now := r.w.o.now().UTC().Format(time.RFC3339Nano)
	return r.layout.UpdateIndex(ctx, func(idx *v1.IndexManifest) (bool, error) {
		for i, d := range idx.Manifests {
			if d.Annotations[manifest.AnnotationRefName] == key && d.Annotations[manifest.AnnotationSourceDigest] == src.String() {
				idx.Manifests[i].Annotations[manifest.AnnotationChecked] = now
				return true, nil
			}
		}
		return false, nil
	})
}

// pull fetches ref from the registry and files the wanted platforms.
func (r *run) pull(ctx context.Context, gr group, ref name.Reference, st0 refState, start time.Time) []Result {
	return r.report(r.pullQuiet(ctx, gr, ref, st0, start))
}

func (r *run) pullQuiet(ctx context.Context, gr group, ref name.Reference, st0 refState, start time.Time) []Result {
	out := make([]Result, len(gr.plats))
	fail := func(i int, err error) {
		r.noteFull(err)
		out[i] = Result{Ref: gr.ref, Key: manifest.CacheKey(ref), Platform: platform.Format(gr.plats[i]), Status: StatusFailed, Error: manifest.Describe(err)}
	}
	top, src, err := r.w.o.client.Get(ctx, ref)
	if err != nil {
		for i := range gr.plats {
			fail(i, err)
		}
		return r.finish(out, start)
	}
	// The same digest as cached: keep the platforms already there.
	same := st0.found && st0.entry.SourceDigest == top.Digest
	status := StatusPulled
	if st0.found && !same {
		status = StatusUpdated
	}
	children, fetched, err := r.platformManifests(ctx, ref, top, src, gr.plats)
	if err != nil {
		for i := range gr.plats {
			fail(i, err)
		}
		return r.finish(out, start)
	}
	var descs []v1.Descriptor
	var mu sync.Mutex
	g := new(errgroup.Group)
	for i, p := range gr.plats {
		if children[i].err != nil {
			fail(i, children[i].err)
			continue
		}
		g.Go(func() error {
			pstart := time.Now()
			d := children[i].desc
			n, size, err := r.pullImage(ctx, gr.ref, ref, src, children[i])
			if err != nil {
				fail(i, fmt.Errorf("pulling %s for %s: %w", gr.ref, platform.Format(p), err))
				return nil
			}
			mu.Lock()
			descs = append(descs, d)
			mu.Unlock()
			st := status
			if prev, ok := st0.have[platform.Format(p)]; ok && same && prev.Digest == d.Digest {
				st = StatusFresh // this platform was cached already; another one was missing
			}
			out[i] = Result{Ref: gr.ref, Key: manifest.CacheKey(ref), Platform: platform.Format(p), Digest: d.Digest.String(), Status: st, Bytes: n, Size: size, Duration: time.Since(pstart)}
			return nil
		})
	}
	g.Wait()
	for i := range out { // what was fetched to learn the platform counts once
		if out[i].Status != StatusFailed {
			out[i].Bytes += fetched
			break
		}
	}
	if len(descs) > 0 {
		if err := r.file(ctx, ref, top.Digest, descs); err != nil {
			for i := range out {
				if out[i].Status != StatusFailed {
					fail(i, err)
				}
			}
		}
	}
	return r.finish(out, start)
}

func (r *run) finish(out []Result, start time.Time) []Result {
	for i := range out {
		if out[i].Duration == 0 {
			out[i].Duration = time.Since(start)
		}
	}
	return out
}

// child is the manifest chosen for one wanted platform.
type child struct {
	desc v1.Descriptor // with Platform set
	raw  []byte
	err  error
}

// platformManifests picks, for each wanted platform, the image manifest that
// serves it: from an index by platform, or a single-platform image whose
// config says it is that platform.
//
// fetched is what was downloaded on the way (a single image's config).
func (r *run) platformManifests(ctx context.Context, ref name.Reference, top *remote.Descriptor, src manifest.Source, plats []specs.Platform) (out []child, fetched int64, err error) {
	out = make([]child, len(plats))
	switch {
	case top.MediaType.IsIndex():
		idx, err := v1.ParseIndexManifest(strings.NewReader(string(top.Manifest)))
		if err != nil {
			return nil, 0, fmt.Errorf("parsing index of %s: %w", ref, err)
		}
		for i, p := range plats {
			d, err := platform.Select(p, idx.Manifests)
			if err != nil {
				out[i].err = fmt.Errorf("%s: %w", ref, err)
				continue
			}
			if !d.MediaType.IsImage() {
				out[i].err = fmt.Errorf("%s: entry for %s is a %s, not an image manifest", ref, platform.Format(p), d.MediaType)
				continue
			}
			raw, err := r.fetchManifest(ctx, src.Repo, d)
			out[i] = child{desc: d, raw: raw, err: err}
		}
	case top.MediaType.IsImage():
		have, n, err := r.configPlatform(ctx, ref, src, top)
		if err != nil {
			return nil, 0, err
		}
		fetched = n
		d := top.Descriptor
		d.Platform = platform.ToV1(have)
		for i, p := range plats {
			if _, err := platform.Select(p, []v1.Descriptor{d}); err != nil {
				out[i].err = fmt.Errorf("%s is a single-platform image for %s, not %s", ref, platform.Format(have), platform.Format(p))
				continue
			}
			out[i] = child{desc: d, raw: top.Manifest}
		}
	default:
		return nil, 0, fmt.Errorf("%s: unsupported manifest type %q", ref, top.MediaType)
	}
	return out, fetched, nil
}

func (r *run) fetchManifest(ctx context.Context, repo name.Repository, d v1.Descriptor) ([]byte, error) {
	if r.layout.HasBlob(d.Digest, d.Size) {
		if data, err := r.layout.ReadBlob(d.Digest); err == nil {
			return data, nil
		}
	}
	opts, err := r.w.o.client.RemoteOptions(ctx, repo)
	if err != nil {
		return nil, err
	}
	got, err := remote.Get(repo.Digest(d.Digest.String()), opts...)
	if err != nil {
		return nil, fmt.Errorf("fetching manifest %s: %w", d.Digest, err)
	}
	return got.Manifest, nil
}

// configPlatform reads a single image's platform from its config, storing
// the config blob on the way.
func (r *run) configPlatform(ctx context.Context, ref name.Reference, src manifest.Source, top *remote.Descriptor) (specs.Platform, int64, error) {
	m, err := v1.ParseManifest(strings.NewReader(string(top.Manifest)))
	if err != nil {
		return specs.Platform{}, 0, fmt.Errorf("parsing manifest of %s: %w", ref, err)
	}
	n, err := r.blob(ctx, ref.String(), r.sources(ref, src), m.Config)
	if err != nil {
		return specs.Platform{}, 0, fmt.Errorf("config of %s: %w", ref, err)
	}
	p, err := r.readConfigPlatform(ref, m.Config.Digest)
	return p, n, err
}

func (r *run) readConfigPlatform(ref name.Reference, h v1.Hash) (specs.Platform, error) {
	data, err := r.layout.ReadBlob(h)
	if err != nil {
		return specs.Platform{}, err
	}
	var cfg struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return specs.Platform{}, fmt.Errorf("config of %s: %w", ref, err)
	}
	if cfg.OS == "" || cfg.Architecture == "" {
		return specs.Platform{}, fmt.Errorf("config of %s names no os/architecture", ref)
	}
	return platform.Normalize(specs.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}), nil
}

// sources lists where blobs may come from: where the manifest came from first.
func (r *run) sources(ref name.Reference, src manifest.Source) []manifest.Source {
	out := []manifest.Source{src}
	if src.Mirror {
		out = append(out, manifest.Source{Repo: ref.Context()})
	}
	return out
}

// pullImage stores one platform's config, layers and manifest; the manifest
// goes last so that a stored manifest always has its blobs.
func (r *run) pullImage(ctx context.Context, label string, ref name.Reference, src manifest.Source, c child) (int64, int64, error) {
	m, err := v1.ParseManifest(strings.NewReader(string(c.raw)))
	if err != nil {
		return 0, 0, fmt.Errorf("parsing manifest %s: %w", c.desc.Digest, err)
	}
	blobs := append([]v1.Descriptor{m.Config}, m.Layers...)
	var size int64
	for _, b := range blobs {
		size += b.Size
		r.w.emit(Event{Kind: EventTotal, Ref: label, Total: b.Size})
	}
	counts := make([]int64, len(blobs))
	g, gctx := errgroup.WithContext(ctx)
	for i, b := range blobs {
		g.Go(func() error {
			n, err := r.blob(gctx, label, r.sources(ref, src), b)
			counts[i] = n
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, size, err
	}
	if _, err := r.layout.WriteBlob(ctx, c.desc.Digest, int64(len(c.raw)), strings.NewReader(string(c.raw))); err != nil && !r.layout.HasBlob(c.desc.Digest, c.desc.Size) {
		return 0, size, fmt.Errorf("storing manifest: %w", err)
	}
	var n int64
	for _, c := range counts {
		n += c
	}
	return n, size, nil
}

// blob makes sure one blob is stored, downloading it at most once at a time
// however many images share it. It returns the bytes this call downloaded.
func (r *run) blob(ctx context.Context, label string, srcs []manifest.Source, d v1.Descriptor) (int64, error) {
	if r.layout.HasBlob(d.Digest, d.Size) {
		r.w.emit(Event{Kind: EventBytes, Ref: label, Bytes: d.Size})
		return 0, nil
	}
	f, mine := r.join(d.Digest, func(fctx context.Context) (int64, error) {
		return r.download(fctx, label, srcs, d)
	})
	select {
	case <-f.done:
	case <-ctx.Done():
		r.leave(d.Digest, f)
		return 0, ctx.Err()
	}
	if f.err != nil {
		return 0, f.err
	}
	if !mine {
		r.w.emit(Event{Kind: EventBytes, Ref: label, Bytes: d.Size})
		return 0, nil
	}
	return f.n, nil
}

// join waits for the download of h under way, or starts one with fn. The
// download runs under its own context, a child of the run's, not under the
// image's: an image that fails must not cancel a blob another image waits
// for too.
func (r *run) join(h v1.Hash, fn func(context.Context) (int64, error)) (f *flight, mine bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.flights[h]; f != nil {
		f.waiters++
		return f, false
	}
	ctx, cancel := context.WithCancel(r.ctx)
	f = &flight{done: make(chan struct{}), waiters: 1, cancel: cancel}
	r.flights[h] = f
	r.running.Add(1)
	go func() {
		defer r.running.Done()
		defer cancel()
		n, err := fn(ctx)
		r.mu.Lock()
		if r.flights[h] == f {
			delete(r.flights, h)
		}
		f.n, f.err = n, err
		r.mu.Unlock()
		close(f.done)
	}()
	return f, true
}

// leave stops waiting for f; the last waiter to leave cancels it, and a
// later join of the same blob starts afresh rather than joining a
// cancelled download.
func (r *run) leave(h v1.Hash, f *flight) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f.waiters--
	if f.waiters > 0 {
		return
	}
	f.cancel()
	if r.flights[h] == f {
		delete(r.flights, h)
	}
}

// noteFull remembers the first failure that says the cache's volume is full.
func (r *run) noteFull(err error) {
	var ns *manifest.NoSpaceError
	if !errors.As(err, &ns) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full == nil {
		r.full = ns
	}
}

func (r *run) download(ctx context.Context, label string, srcs []manifest.Source, d v1.Descriptor) (int64, error) {
	if err := r.sem.Acquire(ctx, 1); err != nil {
		return 0, err
	}
	defer r.sem.Release(1)
	if r.layout.HasBlob(d.Digest, d.Size) { // another process stored it meanwhile
		r.w.emit(Event{Kind: EventBytes, Ref: label, Bytes: d.Size})
		return 0, nil
	}
	bw, err := r.layout.NewBlobWriter(d.Digest, d.Size)
	if err != nil {
		return 0, err
	}
	defer bw.Abort()
	progress := func(n int64) { r.w.emit(Event{Kind: EventBytes, Ref: label, Bytes: n}) }
	if err := r.w.o.client.FetchBlob(ctx, srcs, d, bw, progress); err != nil {
		return 0, err
	}
	if err := bw.Commit(); err != nil {
		return 0, err
	}
	r.w.o.log.Debug("blob stored", "digest", d.Digest.String(), "bytes", d.Size, "for", label)
	return d.Size, nil
}

// file records ref's platforms in index.json: kiln's own index of them,
// merged with what is cached for the same source digest (by this run or a
// concurrent one).
func (r *run) file(ctx context.Context, ref name.Reference, src v1.Hash, descs []v1.Descriptor) error {
	key := manifest.CacheKey(ref)
	now := r.w.o.now().UTC().Format(time.RFC3339Nano)
	return r.layout.UpdateIndex(ctx, func(idx *v1.IndexManifest) (bool, error) {
		merged := append([]v1.Descriptor(nil), descs...)
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			if d.Annotations[manifest.AnnotationRefName] != key {
				kept = append(kept, d)
				continue
			}
			if d.Annotations[manifest.AnnotationSourceDigest] == src.String() {
				merged = mergePlatforms(merged, r.cachedChildren(d))
			}
		}
		data, err := json.Marshal(manifest.NewIndex(merged))
		if err != nil {
			return false, err
		}
		h, err := r.layout.PutBlob(data)
		if err != nil {
			return false, err
		}
		idx.Manifests = append(kept, v1.Descriptor{
			MediaType: types.OCIImageIndex, Digest: h, Size: int64(len(data)),
			Annotations: map[string]string{
				manifest.AnnotationRefName:      key,
				manifest.AnnotationSourceDigest: src.String(),
				manifest.AnnotationChecked:      now,
			},
		})
		sortEntries(idx.Manifests)
		return true, nil
	})
}

func (r *run) cachedChildren(d v1.Descriptor) []v1.Descriptor {
	idx, err := r.layout.ReadIndexBlob(d.Digest)
	if err != nil {
		return nil
	}
	var out []v1.Descriptor
	for _, c := range idx.Manifests {
		if r.complete(c) {
			out = append(out, c)
		}
	}
	return out
}

// mergePlatforms adds the descriptors of b whose platform a lacks.
func mergePlatforms(a, b []v1.Descriptor) []v1.Descriptor {
	seen := map[string]bool{}
	for _, d := range a {
		seen[platform.Format(platform.FromV1(d.Platform))] = true
	}
	for _, d := range b {
		k := platform.Format(platform.FromV1(d.Platform))
		if !seen[k] {
			seen[k] = true
			a = append(a, d)
		}
	}
	return a
}

// removeDeadTemps deletes the temporary files of killed writes, whatever
// their age, and leaves live writers' alone (manifest.RemoveDeadTemps).
func (r *run) removeDeadTemps() {
	removed, err := r.layout.RemoveDeadTemps()
	var bytes int64
	for _, t := range removed {
		bytes += t.Size
		r.w.o.log.Info("removed leftover temp file", "path", t.Path, "bytes", t.Size)
	}
	if err != nil {
		r.w.o.log.Warn("removing leftover temp files", "cache", r.layout.Dir(), "err", err)
	}
	if len(removed) > 0 {
		r.w.o.log.Info("removed the leftovers of killed writes", "cache", r.layout.Dir(), "files", len(removed), "bytes", bytes)
	}
}

// repairModes gives files an older kiln wrote private (blobs 0600) the
// modes every reader needs, in place (manifest.RepairModes).
func (r *run) repairModes() {
	rep, err := r.layout.RepairModes()
	if err != nil {
		r.w.o.log.Warn("repairing file modes", "cache", r.layout.Dir(), "err", err)
	}
	if len(rep.Fixed) > 0 {
		r.w.o.log.Info("made the cache readable to every user", "cache", r.layout.Dir(), "files", len(rep.Fixed))
	}
	for _, f := range rep.Failed {
		r.w.o.log.Warn("cannot make a cache file readable to other users (its owner's kiln warm can)", "file", f)
	}
}

// sortEntries orders index.json by reference so that its bytes depend only
// on its contents.
func sortEntries(ds []v1.Descriptor) {
	sort.SliceStable(ds, func(i, j int) bool {
		return ds[i].Annotations[manifest.AnnotationRefName] < ds[j].Annotations[manifest.AnnotationRefName]
	})
}
