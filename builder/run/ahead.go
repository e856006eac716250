package run

import (
	"os"
	"sync"
)

// ahead is the process's detection started ahead of its first RUN step
// (DetectAhead), and the chroot init started alongside it on a guess.
var ahead struct {
	once sync.Once
	done chan struct{} // closed once iso and why are set
	iso  Isolation
	why  string

	mu    sync.Mutex
	spare *startedInit // a chroot init for the first Runner, if the guess held
}

// DetectAhead starts Detect in the background, once per process: its
// probe is a process, and so is a step's init, which a build's first RUN
// step waits for otherwise. As root, where Detect will almost surely say
// chroot (or rootless, in a user namespace of kiln's own, whose steps run
// as chroot steps there), a chroot step's init is started alongside the
// probe, and the first NewRunner that runs chroot steps takes it; if
// Detect says otherwise it is ended. Detected returns the answer.
func DetectAhead() {
	ahead.once.Do(func() {
		ahead.done = make(chan struct{})
		guess := os.Geteuid() == 0
		go func() {
			InitProgram() // both processes start from it
			if guess {
				go startSpare()
			}
			ahead.iso, ahead.why = Detect()
			close(ahead.done)
			dropWrongGuess()
		}()
	})
}

// Detected is Detect's answer for this process, from DetectAhead (started
// now if it was not).
func Detected() (Isolation, string) {
	DetectAhead()
	<-ahead.done
	return ahead.iso, ahead.why
}

// startSpare starts the chroot init of the guess.
func startSpare() {
	out := &laterWriter{}
	p, err := startInit(Chroot, "", nil, out, out)
	if err != nil {
		return // the first Runner starts its own
	}
	p.out = out
	ahead.mu.Lock()
	ahead.spare = p
	ahead.mu.Unlock()
	dropWrongGuess() // Detect may have answered while the init started
}

// dropWrongGuess ends the init started on the guess once Detect has said
// that the steps do not run as chroot steps; before its answer it does
// nothing.
func dropWrongGuess() {
	select {
	case <-ahead.done:
	default:
		return
	}
	if effective(ahead.iso) != Chroot {
		takeSpare().discardIfAny()
	}
}

// takeSpare hands out the init started on the guess, once.
func takeSpare() *startedInit {
	ahead.mu.Lock()
	defer ahead.mu.Unlock()
	p := ahead.spare
	ahead.spare = nil
	return p
}

func (p *startedInit) discardIfAny() {
	if p != nil {
		p.discard()
	}
}
