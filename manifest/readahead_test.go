package manifest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// stream is a layer stream for readahead tests: data, then err (io.EOF
// when nil); closing it records that, and returns closeErr.
type stream struct {
	r        io.Reader
	err      error
	closeErr error
	closed   bool
}

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF && s.err != nil {
		err = s.err
	}
	return n, err
}

func (s *stream) Close() error { s.closed = true; return s.closeErr }

func opener(s *stream) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return s, nil }
}

func TestReadahead(t *testing.T) {
	data := bytes.Repeat([]byte("kiln layer "), 3*readaheadBlock/11) // several blocks, the last one short
	broken := errors.New("broken stream")
	tests := []struct {
		name     string
		s        *stream
		open     func() (io.ReadCloser, error)
		want     string // what ReadAll gives
		wantErr  error  // ReadAll's error
		closeErr error
	}{
		{name: "whole stream", s: &stream{r: bytes.NewReader(data)}, want: string(data)},
		{name: "error after some bytes", s: &stream{r: strings.NewReader("abc"), err: broken}, want: "abc", wantErr: broken},
		{name: "close error", s: &stream{r: strings.NewReader("abc"), closeErr: broken}, want: "abc", closeErr: broken},
		{name: "open error", open: func() (io.ReadCloser, error) { return nil, broken }, wantErr: broken, closeErr: broken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			open := tc.open
			if open == nil {
				open = opener(tc.s)
			}
			ra := newReadahead(context.Background(), open, 8)
			got, err := io.ReadAll(ra)
			if string(got) != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("ReadAll: %d bytes, %v; want %d bytes, %v", len(got), err, len(tc.want), tc.wantErr)
			}
			if err := ra.Close(); !errors.Is(err, tc.closeErr) {
				t.Errorf("Close: %v, want %v", err, tc.closeErr)
			}
			if tc.s != nil && !tc.s.closed {
				t.Error("the stream was not closed")
			}
		})
	}
}

// TestReadaheadStops: Close before the end stops reading (the stream is
// closed, the goroutine ends) and a canceled context ends a Read that waits
// for a stream that gives nothing.
func TestReadaheadStops(t *testing.T) {
	endless := &stream{r: zeros{}}
	ra := newReadahead(context.Background(), opener(endless), 8)
	if _, err := io.ReadFull(ra, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := ra.Close(); err != nil || !endless.closed {
		t.Errorf("Close: %v, stream closed: %v", err, endless.closed)
	}

	release := make(chan struct{})
	stalled := &stream{r: waiting(release)}
	ctx, cancel := context.WithCancel(context.Background())
	ra = newReadahead(ctx, opener(stalled), 8)
	go func() {
		time.Sleep(10 * time.Millisecond)
		cancel()
	}()
	if _, err := ra.Read(make([]byte, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("Read: %v, want context.Canceled", err)
	}
	close(release)
	ra.Close()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// waiting gives io.EOF once release is closed.
type waiting chan struct{}

func (w waiting) Read(p []byte) (int, error) { <-w; return 0, io.EOF }
