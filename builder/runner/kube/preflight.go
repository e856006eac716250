package kube

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	specs "github.com/opencontainers/image-spec/specs-go/v1"
	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"

	"kiln/builder/runner"
	"kiln/platform"
)

// nodeList is the cluster's nodes, listed once per run.
type nodeList struct {
	once  sync.Once
	nodes []corev1.Node
	err   error
}

// Decide implements runner.Decider: a platform builds natively on a node
// of its os and architecture (and the configured node selector) that is
// Ready, schedulable and whose taints the pods tolerate. None: the
// platform fails before any Job is made, naming the labels looked for.
func (r *Runner) Decide(ctx context.Context, p specs.Platform) (runner.Execution, error) {
	nodes, err := r.listNodes(ctx)
	if err != nil {
		return runner.Execution{Mode: runner.Blocked}, err
	}
	want := podSpec(r.o, p).NodeSelector
	var ready, notReady int
	for _, n := range nodes {
		if !matches(n.Labels, want) {
			continue
		}
		if nodeReady(n) && !n.Spec.Unschedulable && tolerated(n.Spec.Taints, r.o.Tolerations) {
			ready++
		} else {
			notReady++
		}
	}
	sel := selectorString(want)
	if ready == 0 {
		return runner.Execution{Mode: runner.Blocked}, fmt.Errorf("%w: no Ready, schedulable node with %s whose taints the build pods tolerate (%d matching nodes are not Ready, cordoned or tainted); add such a node or make %s optional",
			runner.ErrNoNode, sel, notReady, platform.Format(p))
	}
	return runner.Execution{Mode: runner.Native, Where: fmt.Sprintf("a node with %s (%d Ready)", sel, ready)}, nil
}

func (r *Runner) listNodes(ctx context.Context) ([]corev1.Node, error) {
	r.nodes.once.Do(func() {
		list, err := r.api.ListNodes(ctx)
		if err != nil {
			r.nodes.err = fmt.Errorf("listing the cluster's nodes: %w", err)
			return
		}
		r.nodes.nodes = list.Items
	})
	return r.nodes.nodes, r.nodes.err
}

// needed are the permissions build-all needs in the namespace (and, for
// nodes, the cluster): what kiln render rbac grants.
var needed = []authv1.ResourceAttributes{
	{Group: "batch", Resource: "jobs", Verb: "create"},
	{Group: "batch", Resource: "jobs", Verb: "delete"},
	{Group: "batch", Resource: "jobs", Verb: "get"},
	{Resource: "pods", Verb: "watch"},
	{Resource: "pods", Verb: "list"},
	{Resource: "pods", Subresource: "log", Verb: "get"},
	{Resource: "nodes", Verb: "list"},
}

// Preflight checks, with SelfSubjectAccessReviews, that this identity may
// do all build-all does, so that a missing permission is one message up
// front rather than a 403 halfway.
func (r *Runner) Preflight(ctx context.Context) error {
	var missing []string
	for _, a := range needed {
		a := a
		if a.Resource != "nodes" {
			a.Namespace = r.o.namespace()
		}
		rev := &authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a}}
		res, err := r.api.ReviewAccess(ctx, rev)
		if err != nil {
			return fmt.Errorf("checking permissions: %w", err)
		}
		if !res.Status.Allowed {
			what := a.Verb + " " + a.Resource
			if a.Subresource != "" {
				what += "/" + a.Subresource
			}
			if a.Namespace != "" {
				what += " in namespace " + a.Namespace
			}
			missing = append(missing, what)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: this identity may not %s; apply `kiln render rbac` (and run build-all as its ServiceAccount %s) or grant them",
			ErrForbidden, strings.Join(missing, ", "), CoordinatorAccount)
	}
	return nil
}

func matches(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func nodeReady(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// tolerated reports whether every NoSchedule and NoExecute taint of a node
// is tolerated by ts.
func tolerated(taints []corev1.Taint, ts []Toleration) bool {
	for _, t := range taints {
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		if !slices.ContainsFunc(ts, func(tol Toleration) bool { return tolerates(tol, t) }) {
			return false
		}
	}
	return true
}

// tolerates is the scheduler's rule: the effect matches (or is empty),
// the key matches (an empty key with Exists matches all), and the value
// is equal (Equal, the default) or does not matter (Exists).
func tolerates(tol Toleration, t corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != string(t.Effect) {
		return false
	}
	if tol.Key != "" && tol.Key != t.Key {
		return false
	}
	if tol.Operator == string(corev1.TolerationOpExists) {
		return true
	}
	return tol.Key != "" && tol.Value == t.Value
}

func selectorString(sel map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		parts = append(parts, k+"="+sel[k])
	}
	return strings.Join(parts, ", ")
}
