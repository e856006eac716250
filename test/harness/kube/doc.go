// Package kube starts a real, throwaway Kubernetes cluster for kiln's
// end-to-end tests of its Kubernetes runner: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler (v1.37.2), one real amd64 node
// (a kubelet with a private containerd and runc) and fake nodes of any
// architecture simulated by kwok. It is Linux-only and needs root.
//
// Typical use (after .ci/k8s.sh built the binaries; Start skips the test
// when they, root, or containerd and runc are missing):
//
//	reg := harness.NewRegistry(t)
//	busybox, err := kube.PushBusybox(t.Context(), reg.Addr)
//	...
//	c := kube.Start(t, kube.Options{
//		Registry:  reg.Addr,
//		FakeNodes: []kube.FakeNode{{Name: "arm", Arch: "arm64", Ready: true}},
//	})
//	// c.Client and c.Kubeconfig (admin), c.RealNode ("localhost"),
//	// c.ServiceAccountKubeconfig(t, ns, sa) for RBAC tests,
//	// c.CreateNamespace(t, ns) before creating pods in a new namespace.
//
// A cluster is ready in ~10 s on 2 CPUs; a Job on the real node shows its
// first log line ~0.7 s after its creation.
//
// # What runs
//
// Every process listens on 127.0.0.1 only, on free ports, and logs to
// Cluster.Dir/logs/<name>.log (Dir is a t.TempDir()); the tails are printed
// when the cluster fails to start or the test fails. Only processes started
// here are signalled, by PID; the kernel kills them if the test process
// dies (Pdeathsig).
//
//   - etcd (--unsafe-no-fsync).
//   - kube-apiserver: a CA made in Go signs its serving certificate and
//     every component's client certificate; Node and RBAC authorization;
//     service-account tokens signed by an RSA key made in Go; the admin
//     identity (Cluster.Kubeconfig) is a client certificate in
//     system:masters; --endpoint-reconciler-type=none; --allow-privileged.
//   - kube-controller-manager with its default controllers (Job,
//     TTL-after-finished, garbage collector, service-account and token
//     controllers, node lifecycle...), one service account per controller.
//   - kube-scheduler.
//   - The real node, named "localhost" (RealNodeName), Ready and untainted,
//     labelled kubernetes.io/arch=amd64 and kubernetes.io/os=linux by the
//     kubelet: Debian's containerd 1.6 (own root, state, socket and config;
//     restrict_oom_score_adj, because root lacks CAP_SYS_RESOURCE here; the
//     Options.Registry declared as a plain-HTTP host; a pause sandbox image,
//     built by .ci/k8s.sh, pushed there) and the kubelet (cgroupfs,
//     failCgroupV1: false). Their state is in Cluster.NodeDir, a short
//     folder of its own ($TMPDIR/kiln-kube-<pid>-*), because unix socket
//     paths must stay under 108 bytes.
//   - kwok, managing the Ready fake nodes.
//
// # The real node leaves nothing behind
//
// containerd and the kubelet run in a private mount namespace, so every
// mount of the node (root filesystems, volumes, network namespaces) lives
// and dies with it. In that namespace, folders of NodeDir are bind-mounted
// over the machine's paths they would write whatever their configuration
// says (/var/lib/kubelet, /var/log/containers, /var/lib/cni,
// /run/containerd: Start creates these mount points, empty, if missing),
// and files holding the values the kubelet wants over the six /proc/sys
// settings it would otherwise rewrite on the machine (vm.overcommit_memory,
// kernel.panic...). The node runs in a cgroup tree of its own,
// /kiln-kube-<pid>-<random> in every hierarchy (the kubelet's cgroupRoot;
// containerd, so its shims, in <tree>/runtime): Stop kills, frozen,
// whatever the node left running, removes the tree and NodeDir. A test
// process that died before Stop leaves its shims and containers running:
// the next Start finds its tree by the dead PID, and cleans up after it.
//
// # Logs of pods on the real node
//
// The kubelet refuses a loopback node IP, so it runs with
// --hostname-override=localhost and serves on 127.0.0.1 with a certificate
// of the cluster CA; the apiserver reaches it by the node's Hostname address
// (--kubelet-preferred-address-types=Hostname), checks that certificate and
// presents a client certificate: GetLogs with Follow streams while the
// container runs, and ends when it exits (exec and attach work too).
//
// # Networking
//
// Pods with hostNetwork: true share the machine's network: they reach the
// registry at Options.Registry. Other pods get a network namespace with lo
// and an eth0 holding an address of PodCIDR (a veth pair with both ends in
// the pod, made by a small CNI plugin: nothing outside the pod changes), so
// they start and have a pod IP, but reach nothing outside themselves. There
// is no kube-proxy and no cluster DNS (pods fall back to dnsPolicy Default,
// with an event saying so).
//
// # Fake nodes
//
// A Ready FakeNode is annotated kwok.x-k8s.io/node=fake and managed by
// kwok: Ready, a lease renewed, labels kubernetes.io/arch=<Arch> and
// kubernetes.io/os=linux, no taint unless FakeNode.Taints has one (a
// nodeSelector on the arch is enough to keep other pods off). A NotReady
// FakeNode is left alone by kwok: created with Ready=False (the node
// lifecycle controller later sets Unknown), tainted not-ready by the
// control plane, so the scheduler never binds a pod to it.
//
// kwok runs no container. A pod bound to a fake node becomes Running and, if
// a Job owns it, terminates at once (or, with HoldAnnotation or
// Options.FakePodsWaitForRelease, when its ReleaseAnnotation is "true"):
// each container with the exit code of the pod's ExitCodeAnnotation (default
// 0; non-zero makes the pod Failed) and, as the terminated state's message
// (what a real container writes to /dev/termination-log), the pod's
// TerminationMessageAnnotation. The apiserver's log requests for such pods
// are answered, and end, with the pod's LogAnnotation, or FakePodLog.
package kube
