//go:build linux

package kube

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// realNode is the state of the real node between containerd's start and
// the kubelet's.
type realNode struct {
	dir        string // NodeDir
	socket     string // containerd's
	containerd *proc
}

// kubeletSysctls are the kernel settings the kubelet checks at start and,
// when they differ, writes (vm.overcommit_memory=1, kernel.panic=10...).
// The node runs in a private mount namespace where a file holding the
// value the kubelet wants is bind-mounted over each of them, so that the
// kubelet finds them as it wants and the machine's settings stay as they
// are.
var kubeletSysctls = []struct{ path, value string }{
	{"vm/overcommit_memory", "1"},
	{"vm/panic_on_oom", "0"},
	{"kernel/panic", "10"},
	{"kernel/panic_on_oops", "1"},
	{"kernel/keys/root_maxkeys", "1000000"},
	{"kernel/keys/root_maxbytes", "25000000"},
}

// hostPaths are the machine's paths that the kubelet, containerd and CNI
// write to whatever their configuration says: the kubelet's device plugin
// socket (/var/lib/kubelet/device-plugins), its /var/log/containers
// symlinks, CNI's result cache, containerd 1.6's shim sockets and runc
// state (/run/containerd). In the node's mount namespace a folder of
// NodeDir is bind-mounted over each, so nothing is written there on the
// machine and parallel clusters do not meet. Start creates the mount
// points if missing (empty folders).
var hostPaths = []string{"/var/lib/kubelet", "/var/log/containers", "/var/lib/cni", "/run/containerd"}

// nsScript runs in the node's new mount namespace (made by unshare, mounts
// private): it joins the cgroup given first, bind-mounts each source over
// the target that follows it, up to "--", then execs the rest.
const nsScript = `set -e
echo $$ > "$1"; shift
while [ "$1" != -- ]; do mount --bind "$1" "$2"; shift 2; done
shift
exec "$@"`

// startContainerd starts the node's private containerd: its own root,
// state, socket and config, in a new mount namespace that the kubelet
// joins, so that every mount the node makes (container root filesystems,
// volumes, network namespaces) lives and dies with it. It pushes the pause
// image to registry first.
func (c *Cluster) startContainerd(ctx context.Context, registry string) (*realNode, error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", stalePrefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	c.NodeDir = dir
	n := &realNode{dir: dir, socket: filepath.Join(dir, "c.sock")}
	if c.cgroups, err = newCgroupTree(randomSuffix()); err != nil {
		return nil, err
	}
	pause, err := pushPause(ctx, registry, filepath.Join(c.bins, "pause"))
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	runc, err := lookHost("runc", hostPrograms["runc"])
	if err != nil {
		return nil, err
	}
	cniConf, cniBin := filepath.Join(dir, "cni", "conf"), filepath.Join(dir, "cni", "bin")
	hostsDir := filepath.Join(dir, "certs.d", registry)
	for _, d := range []string{cniConf, cniBin, hostsDir, filepath.Join(dir, "sysctl")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := c.writeCNI(cniConf, cniBin); err != nil {
		return nil, err
	}
	hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+registry, "http://"+registry)
	if err := os.WriteFile(filepath.Join(hostsDir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # root has no CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), n.socket, n.socket+".ttrpc", pause, runc,
		cniBin, cniConf, filepath.Join(dir, "certs.d"))
	cfgPath := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}

	procs, err := c.cgroups.procsFile("runtime")
	if err != nil {
		return nil, err
	}
	args := []string{"--mount", "--propagation", "private", "--", hostPrograms["sh"], "-c", nsScript, "sh", procs}
	for _, s := range kubeletSysctls {
		f := filepath.Join(dir, "sysctl", strings.ReplaceAll(s.path, "/", "."))
		if err := os.WriteFile(f, []byte(s.value+"\n"), 0o644); err != nil {
			return nil, err
		}
		args = append(args, f, filepath.Join("/proc/sys", s.path))
	}
	for _, hp := range hostPaths {
		src := filepath.Join(dir, "host", strings.ReplaceAll(strings.TrimPrefix(hp, "/"), "/", "-"))
		if err := os.MkdirAll(src, 0o755); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(hp, 0o755); err != nil {
			return nil, fmt.Errorf("mount point %s: %w", hp, err)
		}
		args = append(args, src, hp)
	}
	containerd, err := lookHost("containerd", hostPrograms["containerd"])
	if err != nil {
		return nil, err
	}
	unshare, err := lookHost("unshare", hostPrograms["unshare"])
	if err != nil {
		return nil, err
	}
	args = append(args, "--", containerd, "--config", cfgPath, "--log-level", "warn")
	if n.containerd, err = c.run("containerd", nil, unshare, args...); err != nil {
		return nil, err
	}
	err = c.waitFor(ctx, "containerd's socket", func(context.Context) (bool, error) {
		conn, err := net.DialTimeout("unix", n.socket, time.Second)
		if err != nil {
			return false, err
		}
		conn.Close()
		return true, nil
	})
	return n, err
}

// podIPPlugin is the real node's CNI plugin, a shell script: it gives a
// pod's network namespace an eth0 with an address of PodCIDR (/32, no
// route), one end of a veth pair whose other end (kiln0) stays in the same
// namespace. Nothing is made outside the pod's namespace, which dies with
// the pod, so DEL has nothing to do. Addresses come from a counter in the
// plugin's folder. %[1]s, %[2]s, %[3]s: flock, nsenter and ip.
const podIPPlugin = `#!/bin/sh
set -u
cat >/dev/null
fail() { printf '{"cniVersion":"0.4.0","code":100,"msg":"kiln-pod-ip: %%s"}\n' "$1"; exit 1; }
case "${CNI_COMMAND:-}" in
VERSION) echo '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}'; exit 0 ;;
ADD) ;;
*) exit 0 ;;
esac
state=$(dirname "$0")/../ipam
mkdir -p "$state" || fail "mkdir $state"
n=$( (%[1]s 9 && n=$(cat "$state/next" 2>/dev/null || echo 0) && echo $((n + 1)) >"$state/next" && echo "$n") 9>"$state/lock") || fail "allocating an address"
[ "$n" -lt 60000 ] || fail "no address left"
addr=10.88.$((n / 250)).$((n %% 250 + 2))
out=$(printf 'link add %%s type veth peer name kiln0\naddr add %%s/32 dev %%s\nlink set %%s up\nlink set kiln0 up\n' \
	"$CNI_IFNAME" "$addr" "$CNI_IFNAME" "$CNI_IFNAME" | %[2]s --net="$CNI_NETNS" %[3]s -batch - 2>&1) ||
	fail "$(echo "$out" | tr '\n"' "  ")"
printf '{"cniVersion":"0.4.0","interfaces":[{"name":"%%s","sandbox":"%%s"}],"ips":[{"version":"4","address":"%%s/32","interface":0}]}\n' \
	"$CNI_IFNAME" "$CNI_NETNS" "$addr"
`

// PodCIDR holds the addresses of the real node's pods without hostNetwork.
const PodCIDR = "10.88.0.0/16"

// writeCNI writes the CNI configuration of the real node: podIPPlugin
// alone; containerd sets each pod's lo up itself, with Debian's loopback
// plugin.
func (c *Cluster) writeCNI(conf, bin string) error {
	if err := os.Symlink(filepath.Join(cniDir, "loopback"), filepath.Join(bin, "loopback")); err != nil {
		return err
	}
	var tools []any
	for _, t := range []string{"flock", "nsenter", "ip"} {
		p, err := lookHost(t, hostPrograms[t])
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		tools = append(tools, p)
	}
	if err := os.WriteFile(filepath.Join(bin, "kiln-pod-ip"), fmt.Appendf(nil, podIPPlugin, tools...), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(conf, "10-kiln.conflist"), []byte(`{
  "cniVersion": "0.4.0",
  "name": "kiln-pods",
  "plugins": [{"type": "kiln-pod-ip"}]
}
`), 0o644)
}

// startKubelet starts the kubelet in containerd's mount namespace, with
// its cgroupRoot the cluster's cgroup tree.
func (c *Cluster) startKubelet(ctx context.Context, n *realNode, p ports, cc *clusterCerts) error {
	kc, err := c.componentKubeconfig("kubelet", &cc.node)
	if err != nil {
		return err
	}
	root := filepath.Join(n.dir, "kubelet")
	for _, d := range []string{root, filepath.Join(root, "pki"), filepath.Join(root, "volume-plugins")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
tlsCertFile: %q
tlsPrivateKeyFile: %q
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %q}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupRoot: %q
failCgroupV1: false
failSwapOn: false
podLogsDir: %q
volumePluginDir: %q
clusterDomain: cluster.local
oomScoreAdj: 0
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "1%%", nodefs.inodesFree: "1%%", imagefs.available: "1%%", imagefs.inodesFree: "1%%"}
evictionPressureTransitionPeriod: 5s
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 10s
shutdownGracePeriod: 0s
registerNode: true
rotateCertificates: false
serverTLSBootstrap: false
maxPods: 50
`, p.kubelet, p.kubeletHealthz, cc.nodeServing.CertFile, cc.nodeServing.KeyFile, c.pki.CAFile, n.socket,
		c.cgroups.name, filepath.Join(n.dir, "pod-logs"), filepath.Join(root, "volume-plugins"))
	cfgPath := filepath.Join(c.Dir, "kubelet.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	nsenter, err := lookHost("nsenter", hostPrograms["nsenter"])
	if err != nil {
		return err
	}
	_, err = c.run("kubelet", nil, nsenter,
		fmt.Sprintf("--mount=/proc/%d/ns/mnt", n.containerd.pid()), "--",
		filepath.Join(c.bins, "kubelet"),
		"--config="+cfgPath,
		"--kubeconfig="+kc,
		"--hostname-override="+RealNodeName,
		"--root-dir="+root,
		"--cert-dir="+filepath.Join(root, "pki"),
		"--v=1",
	)
	return err
}
