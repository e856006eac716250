package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"kiln/builder/buildall"
	"kiln/manifest"
	"kiln/platform"
)

// printBuildAllSummary prints a row per (image, platform), the errors, and
// where each image's index went.
func printBuildAllSummary(w io.Writer, rep *buildall.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	cached := false // a CACHE column when some build used the layer cache
	for _, im := range rep.Images {
		for _, p := range im.Platforms {
			cached = cached || p.CacheHits+p.CacheMisses > 0
		}
	}
	head := "IMAGE\tPLATFORM\tDIGEST\tSIZE\tTIME\tWHERE\tSTATUS"
	if cached {
		head += "\tCACHE"
	}
	fmt.Fprintln(tw, head)
	for _, im := range rep.Images {
		for _, p := range im.Platforms {
			digest, size, took, where := "-", "-", "-", "-"
			if p.Status == buildall.StatusBuilt {
				digest, size, where = shortDigest(p.Digest.String()), manifest.FormatBytes(p.Size), p.Where
				if p.Emulated {
					where += " (emulated)"
				}
			}
			if p.Duration > 0 {
				took = fmt.Sprintf("%.1fs", p.Duration.Seconds())
			}
			status := string(p.Status)
			if !p.Required {
				status += " (optional)"
			}
			row := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", im.Name, platform.Format(p.Platform), digest, size, took, where, status)
			if cached {
				row += "\t-"
				if n := p.CacheHits + p.CacheMisses; n > 0 {
					row = fmt.Sprintf("%s\t%d/%d hits", row[:len(row)-2], p.CacheHits, n)
				}
			}
			fmt.Fprintln(tw, row)
		}
	}
	tw.Flush()
	seen := map[string]bool{} // a context that cannot be read fails every platform alike
	for _, im := range rep.Images {
		for _, p := range im.Platforms {
			if p.Err != nil && p.Status != buildall.StatusSkipped && !seen[p.Err.Error()] {
				seen[p.Err.Error()] = true
				fmt.Fprintf(w, "  %s\n", manifest.Describe(p.Err))
			}
		}
	}
	fmt.Fprintln(w)
	for _, im := range rep.Images {
		printIndexLines(w, im)
	}
}

func printIndexLines(w io.Writer, im buildall.ImageResult) {
	if im.Index.Hex == "" {
		fmt.Fprintf(w, "no index for %s: %s\n", im.Name, manifest.Describe(im.Err))
		return
	}
	n := 0
	for _, p := range im.Platforms {
		if p.Status == buildall.StatusBuilt {
			n++
		}
	}
	fmt.Fprintf(w, "index %s %s (%s, %s)\n", im.Name, im.Index, im.MediaType, count(n, "platform", "platforms"))
	if im.Pushed {
		for _, t := range im.Tags {
			fmt.Fprintf(w, "  pushed %s\n", t)
		}
	}
	if im.OCIDir != "" {
		fmt.Fprintf(w, "  wrote oci:%s (%s)\n", im.OCIDir, im.RefName)
		printPlatformRefs(w, "    ", im.OCIDir, im.RefName)
	}
	if im.Err != nil {
		fmt.Fprintf(w, "  %v\n", im.Err)
	}
}

// buildAllExit is exit 1, naming the images, when some image has no index.
func buildAllExit(rep *buildall.Report) error {
	if !rep.Failed() {
		return nil
	}
	var failed []string
	for _, im := range rep.Images {
		if im.Err != nil {
			failed = append(failed, im.Name)
		}
	}
	return cli.Exit(fmt.Sprintf("%d of %s failed: %s (see above)", len(failed), count(len(rep.Images), "image", "images"), strings.Join(failed, ", ")), exitFailed)
}

// buildAllMetadata is --metadata-file's content.
type buildAllMetadata struct {
	Images []buildAllImageMetadata `json:"images"`
	// AllowPlatformMismatch: bases of another platform were allowed
	// (--allow-platform-mismatch); each build's log names them.
	AllowPlatformMismatch bool `json:"allow_platform_mismatch,omitempty"`
}

type buildAllImageMetadata struct {
	Image       string                     `json:"image"`
	IndexDigest string                     `json:"index_digest,omitempty"`
	MediaType   string                     `json:"media_type,omitempty"`
	Tags        []string                   `json:"tags"`
	Pushed      bool                       `json:"pushed"`
	OCILayout   string                     `json:"oci_layout,omitempty"`
	RefName     string                     `json:"ref_name,omitempty"`
	Error       string                     `json:"error,omitempty"`
	Platforms   []buildAllPlatformMetadata `json:"platforms"`
}

type buildAllPlatformMetadata struct {
	Platform string  `json:"platform"`
	Required bool    `json:"required"`
	Status   string  `json:"status"`
	Digest   string  `json:"digest,omitempty"`
	Size     int64   `json:"size,omitempty"`
	Seconds  float64 `json:"seconds"`
	Where    string  `json:"where,omitempty"`
	Mode     string  `json:"mode"`
	Emulated bool    `json:"emulated"`
	Error    string  `json:"error,omitempty"`
	// LayerCache counts the layer cache's hits and misses (--cache).
	LayerCache *cacheCounts `json:"layer_cache,omitempty"`
}

type cacheCounts struct {
	Hits   int `json:"hits"`
	Misses int `json:"misses"`
}

func writeBuildAllMetadata(path string, rep *buildall.Report, allowMismatch bool) error {
	if path == "" {
		return nil
	}
	md := buildAllMetadata{Images: []buildAllImageMetadata{}, AllowPlatformMismatch: allowMismatch}
	for _, im := range rep.Images {
		m := buildAllImageMetadata{Image: im.Name, MediaType: string(im.MediaType), Tags: []string{}, Pushed: im.Pushed,
			OCILayout: im.OCIDir, RefName: im.RefName, Error: errString(im.Err), Platforms: []buildAllPlatformMetadata{}}
		if im.Index.Hex != "" {
			m.IndexDigest = im.Index.String()
		}
		for _, t := range im.Tags {
			m.Tags = append(m.Tags, t.String())
		}
		for _, p := range im.Platforms {
			pm := buildAllPlatformMetadata{Platform: platform.Format(p.Platform), Required: p.Required, Status: string(p.Status),
				Size: p.Size, Seconds: p.Duration.Seconds(), Where: p.Where, Mode: p.Mode.String(), Emulated: p.Emulated, Error: errString(p.Err)}
			if p.Digest.Hex != "" {
				pm.Digest = p.Digest.String()
			}
			if p.CacheHits+p.CacheMisses > 0 {
				pm.LayerCache = &cacheCounts{Hits: p.CacheHits, Misses: p.CacheMisses}
			}
			m.Platforms = append(m.Platforms, pm)
		}
		md.Images = append(md.Images, m)
	}
	data, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, append(data, '\n')); err != nil {
		return fmt.Errorf("--metadata-file: %w", err)
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return manifest.Describe(err) // no upload session or signature in the metadata file
}
