package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"kiln/manifest"
)

// retryFlags set how hard registry writes are retried: every blob upload,
// mount, manifest and tag PUT gets the same jittered backoff as warm's
// downloads, within a time budget per push.
func retryFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "retries", Value: manifest.DefaultPushAttempts, Usage: "tries for each registry write: a blob upload, mount, manifest or tag push (on 5xx, 408, 429, resets, stalls; never on 401/403/404)", EnvVars: envs("RETRIES")},
		&cli.DurationFlag{Name: "retry-budget", Value: manifest.DefaultRetryBudget, Usage: "the most time one push may spend retrying", EnvVars: envs("RETRY_BUDGET")},
	}
}

// retryOptions turns the retry flags into client options.
func retryOptions(c *cli.Context) ([]manifest.ClientOption, error) {
	n := c.Int("retries")
	if n < 1 {
		return nil, fmt.Errorf("--retries %d: want at least 1 (1 means no retry)", n)
	}
	if c.Duration("retry-budget") < 0 {
		return nil, fmt.Errorf("--retry-budget %s: want a duration of 0 or more", c.Duration("retry-budget"))
	}
	return []manifest.ClientOption{manifest.WithPushRetries(n, c.Duration("retry-budget"))}, nil
}
