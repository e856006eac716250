package main

import (
	"errors"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"

	"kiln/builder"
	"kiln/builder/run"
)

// ownUserNamespace runs the whole command again in a user namespace of
// kiln's own (run.ReexecInUserNamespace) when it runs rootless and would
// use the layer store: there the caller is root over its subordinate ids,
// so a base is unpacked once into the store with its real owners and each
// stage is an overlay mount of it, as root builds have. nil: go on here,
// as before (root, layer store off, --isolation container, walk snapshots,
// no subordinate id range, already in it); otherwise the error ends the
// command with the re-executed one's exit status.
func ownUserNamespace(c *cli.Context, cacheDir string, log *slog.Logger) error {
	if os.Geteuid() == 0 || run.InOwnUserNamespace() || !c.Bool("layer-store") || cacheDir == "" {
		return nil
	}
	switch c.String("isolation") {
	case "", "auto", string(run.Rootless):
	default:
		return nil
	}
	if c.String("snapshot") == builder.SnapshotWalk {
		return nil
	}
	if ok, why := run.SubordinateIDs(); !ok {
		log.Debug("rootless: stages are unpacked, not mounted from the layer store: no user namespace of kiln's own", "why", why)
		return nil
	}
	code, err := run.ReexecInUserNamespace(log)
	if errors.Is(err, run.ErrNoUserNamespace) {
		log.Info("rootless: stages are unpacked, not mounted from the layer store", "why", err.Error())
		return nil
	}
	if err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	return cli.Exit("", code)
}
