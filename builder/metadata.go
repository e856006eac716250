package builder

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// metadata applies an instruction that only edits the config, and records
// its history entry as BuildKit words it. false: not such an instruction.
func (b *builder) metadata(s *stageState, cmd instructions.Command) bool {
	c := &s.cfg.Config
	var msg string
	switch cmd := cmd.(type) {
	case *instructions.EnvCommand:
		msg = "ENV"
		for _, kv := range cmd.Env {
			c.Env = setEnv(c.Env, kv.Key, kv.Value)
			s.vars.set(kv.Key, kv.Value)
			msg += " " + kv.String()
		}
	case *instructions.LabelCommand:
		msg = "LABEL"
		for _, kv := range cmd.Labels {
			c.Labels = setLabel(c.Labels, kv.Key, kv.Value)
			msg += " " + kv.String()
		}
	case *instructions.MaintainerCommand:
		s.cfg.Author = cmd.Maintainer
		msg = "MAINTAINER " + cmd.Maintainer
	case *instructions.CmdCommand:
		c.Cmd = s.commandLine(cmd.ShellDependantCmdLine)
		s.cmdSet = true
		msg = fmt.Sprintf("CMD %q", c.Cmd)
	case *instructions.EntrypointCommand:
		c.Entrypoint = s.commandLine(cmd.ShellDependantCmdLine)
		if !s.cmdSet {
			c.Cmd = nil // an inherited CMD was meant for the old ENTRYPOINT
		}
		msg = fmt.Sprintf("ENTRYPOINT %q", c.Entrypoint)
	case *instructions.UserCommand:
		c.User = cmd.User
		msg = "USER " + cmd.User
	case *instructions.VolumeCommand:
		msg = fmt.Sprintf("VOLUME %v", cmd.Volumes)
		c.Volumes = addSet(c.Volumes, cmd.Volumes...)
	case *instructions.StopSignalCommand:
		c.StopSignal = cmd.Signal
		msg = "STOPSIGNAL " + cmd.Signal
	case *instructions.ShellCommand:
		c.Shell = slices.Clone(cmd.Shell)
		msg = fmt.Sprintf("SHELL %v", cmd.Shell)
	case *instructions.HealthCheckCommand:
		c.Healthcheck = healthConfig(cmd)
		msg = fmt.Sprintf("HEALTHCHECK %+v", *c.Healthcheck)
	default:
		return false
	}
	s.history(b.created, msg, true)
	return true
}

// commandLine is CMD's or ENTRYPOINT's argv: the exec form as written, the
// shell form wrapped in the stage's SHELL.
func (s *stageState) commandLine(cl instructions.ShellDependantCmdLine) []string {
	if !cl.PrependShell {
		return slices.Clone(cl.CmdLine)
	}
	sh := []string{"/bin/sh", "-c"}
	if len(s.cfg.Config.Shell) > 0 {
		sh = slices.Clone(s.cfg.Config.Shell)
	}
	return append(sh, strings.Join(cl.CmdLine, " "))
}

func healthConfig(cmd *instructions.HealthCheckCommand) *v1.HealthConfig {
	h := cmd.Health
	return &v1.HealthConfig{
		Test: slices.Clone(h.Test), Interval: h.Interval, Timeout: h.Timeout,
		StartPeriod: h.StartPeriod, Retries: h.Retries,
	}
}

// arg defines stage ARGs as BuildKit does: a build arg wins, then the
// default (expanded now), then the global ARG of that name.
func (b *builder) arg(s *stageState, cmd *instructions.ArgCommand) error {
	var parts []string
	for _, kv := range cmd.Args {
		val, ok, err := b.argValue(s, kv)
		if err != nil {
			return err
		}
		part := kv.Key
		if ok {
			s.vars.set(kv.Key, val)
			part += "=" + val
		}
		parts = append(parts, part)
		if !slices.Contains(s.buildArgs, kv.Key) {
			s.buildArgs = append(s.buildArgs, kv.Key)
		}
	}
	s.history(b.created, "ARG "+strings.Join(parts, " "), true)
	return nil
}

func (b *builder) argValue(s *stageState, kv instructions.KeyValuePairOptional) (string, bool, error) {
	if v, ok := b.req.BuildArgs[kv.Key]; ok {
		return v, true, nil
	}
	if kv.Value != nil {
		v, _, err := b.lex.ProcessWord(*kv.Value, s.vars)
		return v, err == nil, err
	}
	for _, g := range b.plan.GlobalArgs {
		if g[0] == kv.Key {
			return g[1], true, nil
		}
	}
	return "", false, nil
}

// expose adds ports, expanded and split as BuildKit does ("80", "53/udp",
// "8000-8002").
func (b *builder) expose(s *stageState, cmd *instructions.ExposeCommand) error {
	var ports []string
	for _, p := range cmd.Ports {
		words, err := b.lex.ProcessWords(p, s.vars)
		if err != nil {
			return err
		}
		for _, w := range words {
			ps, err := portSpecs(w)
			if err != nil {
				return err
			}
			ports = append(ports, ps...)
		}
	}
	s.cfg.Config.ExposedPorts = addSet(s.cfg.Config.ExposedPorts, ports...)
	slices.Sort(ports)
	s.history(b.created, fmt.Sprintf("EXPOSE map%v", portMap(ports)), true)
	return nil
}

// portSpecs turns "8000-8001/udp" into ["8000/udp", "8001/udp"].
func portSpecs(spec string) ([]string, error) {
	port, proto, _ := strings.Cut(spec, "/")
	if proto == "" {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, fmt.Errorf("invalid port %q: protocol must be tcp, udp or sctp", spec)
	}
	lo, hi, isRange := strings.Cut(port, "-")
	if !isRange {
		hi = lo
	}
	first, err1 := strconv.ParseUint(lo, 10, 16)
	last, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || last < first {
		return nil, fmt.Errorf("invalid port %q", spec)
	}
	var out []string
	for p := first; p <= last; p++ {
		out = append(out, fmt.Sprintf("%d/%s", p, proto))
	}
	return out, nil
}

func portMap(ports []string) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = p + ":{}"
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func addSet(m map[string]struct{}, keys ...string) map[string]struct{} {
	if m == nil {
		m = map[string]struct{}{}
	}
	for _, k := range keys {
		m[k] = struct{}{}
	}
	return m
}

func setLabel(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

// finish turns the target stage into the result image: --label, the
// requested platform, timestamps.
func (b *builder) finish(s *stageState) (v1.Image, error) {
	c := &s.cfg.Config
	for _, k := range slices.Sorted(maps.Keys(b.req.Labels)) {
		c.Labels = setLabel(c.Labels, k, b.req.Labels[k])
	}
	p := b.req.Platform
	s.cfg.OS, s.cfg.Architecture, s.cfg.Variant, s.cfg.OSVersion = p.OS, p.Architecture, p.Variant, p.OSVersion
	s.cfg.Created = v1.Time{Time: b.created}
	s.cfg.Container = ""
	s.cfg.DockerVersion = ""
	return s.image()
}
