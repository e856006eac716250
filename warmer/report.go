package warmer

import (
	"encoding/json"
	"time"
)

// Status is what happened to one (image, platform).
type Status string

const (
	// StatusPulled: it was not in the cache and now is.
	StatusPulled Status = "pulled"
	// StatusFresh: the cache had it; nothing was downloaded.
	StatusFresh Status = "fresh"
	// StatusUpdated: the tag had moved; the new image was pulled.
	StatusUpdated Status = "updated"
	// StatusFailed: it is not in the cache (Error says why).
	StatusFailed Status = "failed"
)

// Result is the outcome for one (image, platform).
type Result struct {
	Ref      string `json:"ref"`
	Key      string `json:"key,omitempty"` // the canonical name in the cache
	Platform string `json:"platform"`
	// Digest is the platform's image manifest digest.
	Digest string `json:"digest,omitempty"`
	Status Status `json:"status"`
	// Revalidated: a HEAD request confirmed the tag had not moved.
	Revalidated bool `json:"revalidated,omitempty"`
	// Bytes is what this run downloaded for it (blobs shared with another
	// image count once, for whichever fetched them).
	Bytes int64 `json:"bytes"`
	// Size is the image's total size: config and compressed layers.
	Size     int64         `json:"size"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"`
	Error    string        `json:"error,omitempty"`
	// Warning: it is in the cache, but something went wrong (a registry that
	// could not be reached to revalidate it).
	Warning string `json:"warning,omitempty"`
}

// Report is the outcome of one Warm.
type Report struct {
	CacheDir string    `json:"cache_dir"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Results  []Result  `json:"results"`
	// Bytes is the total downloaded.
	Bytes  int64          `json:"bytes"`
	Counts map[Status]int `json:"counts"`
	// DiskFull, when set, says the cache's volume ran out of space: the
	// pairs that failed for it need room, not a retry.
	DiskFull string        `json:"disk_full,omitempty"`
	Pruned   *PruneReport  `json:"pruned,omitempty"`
	Verify   *VerifyReport `json:"verify,omitempty"`
}

// OK reports whether every requested (image, platform) is in the cache.
func (r *Report) OK() bool { return r.Counts[StatusFailed] == 0 }

// MarshalJSON keeps seconds in sync with durations.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	p := plain(r)
	p.Seconds = r.Duration.Seconds()
	return json.Marshal(p)
}

// Event is a progress notification for a live display.
type Event struct {
	Kind EventKind
	Ref  string
	// Bytes downloaded (EventBytes; negative when a transfer restarted).
	Bytes int64
	// Total bytes expected for Ref so far (EventTotal adds to it).
	Total  int64
	Result *Result // EventDone
}

// EventKind says what an Event reports.
type EventKind int

const (
	// EventStart: work on Ref began.
	EventStart EventKind = iota
	// EventTotal: Total more bytes will be downloaded for Ref.
	EventTotal
	// EventBytes: Bytes arrived for Ref.
	EventBytes
	// EventDone: one (Ref, platform) finished; Result says how.
	EventDone
)
