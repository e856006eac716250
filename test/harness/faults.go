package harness

import (
	"maps"
	"math/rand"
	"net/http"
	"regexp"
	"sync"
	"time"
)

// Fault kinds, the keys of FaultProxy.Counts.
const (
	CountRequests     = "requests"       // every request the proxy received
	CountUploadBytes  = "upload-bytes"   // request body bytes the proxy read, sent on or not
	FaultStatus500    = "status500"      // answered 500 without reaching the registry
	FaultStatus429    = "status429"      // answered 429 with Retry-After: 1
	FaultReset        = "reset"          // connection reset before any response
	FaultResetMidBody = "reset-mid-body" // blob GET: headers and part of the body, then closed
	FaultStall        = "stall"          // blob GET: part of the body, then no progress
	FaultResetUpload  = "reset-upload"   // request with a body: part of it read, then the connection reset
	FaultStall503     = "stall-503"      // no answer for StallFor (default 2s), then 503
)

const defaultMaxFaultsPerPath = 3

// blobGETPath matches the path of a blob GET, the only request that gets
// mid-body faults.
var blobGETPath = regexp.MustCompile(`^/v2/.+/blobs/sha256:[0-9a-f]{64}$`)

// Faults configures a FaultProxy. Each request eligible for faults draws, in
// the order of the fields below, whether it gets each kind with that
// probability; the first hit wins. Draws come from one generator seeded by
// Seed, so a sequential client sees the same faults on every run.
type Faults struct {
	Seed         int64
	Status500    float64 // probability of a 500 without reaching the registry
	Status429    float64 // ... of a 429 with "Retry-After: 1"
	Reset        float64 // ... of the connection being reset before any response
	ResetMidBody float64 // blob GET only: headers and part of the body, then the connection closes
	Stall        float64 // blob GET only: part of the body, then nothing until the client goes away or StallFor passes
	ResetUpload  float64 // requests with a body (upload PATCH/PUT, manifest PUT): part of it read, then the connection reset
	Stall503     float64 // any request: nothing for StallFor (2s if 0), then a 503
	// StallFor is how long a stall lasts before the rest of the body is
	// sent; 0 stalls until the client goes away or the proxy closes.
	StallFor time.Duration
	// MaxFaultsPerPath caps the faults for one URL path, so a client that
	// retries always gets through; 0 means 3.
	MaxFaultsPerPath int
	// Only, if set, says which requests are eligible for faults.
	Only func(r *http.Request) bool
}

// injector decides faults and counts them; safe for concurrent use.
type injector struct {
	f Faults

	mu      sync.Mutex
	rng     *rand.Rand
	perPath map[string]int
	counts  map[string]int
}

func newInjector(f Faults) *injector {
	if f.MaxFaultsPerPath <= 0 {
		f.MaxFaultsPerPath = defaultMaxFaultsPerPath
	}
	return &injector{
		f:       f,
		rng:     rand.New(rand.NewSource(f.Seed)),
		perPath: map[string]int{},
		counts:  map[string]int{},
	}
}

// decide counts the request and returns the fault it gets, or "".
func (in *injector) decide(r *http.Request) string {
	eligible := in.f.Only == nil || in.f.Only(r) // outside the lock: user code
	in.mu.Lock()
	defer in.mu.Unlock()
	in.counts[CountRequests]++
	if !eligible {
		return ""
	}
	if in.perPath[r.URL.Path] >= in.f.MaxFaultsPerPath {
		return ""
	}
	kind := in.draw(r.Method == http.MethodGet && blobGETPath.MatchString(r.URL.Path), r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody)
	if kind != "" {
		in.perPath[r.URL.Path]++
	}
	return kind
}

// draw consumes one number per configured kind until one hits.
func (in *injector) draw(blobGET, hasBody bool) string {
	kinds := []struct {
		kind     string
		p        float64
		blobOnly bool
		bodyOnly bool
	}{
		{FaultStatus500, in.f.Status500, false, false},
		{FaultStatus429, in.f.Status429, false, false},
		{FaultReset, in.f.Reset, false, false},
		{FaultResetMidBody, in.f.ResetMidBody, true, false},
		{FaultStall, in.f.Stall, true, false},
		{FaultResetUpload, in.f.ResetUpload, false, true},
		{FaultStall503, in.f.Stall503, false, false},
	}
	for _, k := range kinds {
		if k.p <= 0 || (k.blobOnly && !blobGET) || (k.bodyOnly && !hasBody) {
			continue
		}
		if in.rng.Float64() < k.p {
			return k.kind
		}
	}
	return ""
}

// record counts a fault that was actually injected.
func (in *injector) record(kind string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.counts[kind]++
}

// add adds n to the count of kind.
func (in *injector) add(kind string, n int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.counts[kind] += n
}

func (in *injector) snapshot() map[string]int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return maps.Clone(in.counts)
}
