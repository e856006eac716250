package kube

import (
	"errors"
	"strings"
	"testing"

	specs "github.com/opencontainers/image-spec/specs-go/v1"
	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"kiln/builder/runner"
)

func node(name, arch string, ready bool, taints ...corev1.Taint) *corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelOSStable: "linux", corev1.LabelArchStable: arch, "node-pool": "builders"}},
		Spec:   corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}},
	}
}

// TestDecide: a platform goes to a Ready, schedulable node of its os and
// arch whose taints the pods tolerate; none is an error up front.
func TestDecide(t *testing.T) {
	spot := corev1.Taint{Key: "spot", Value: "true", Effect: corev1.TaintEffectNoSchedule}
	cs := fake.NewClientset(
		node("amd-1", "amd64", true), node("amd-2", "amd64", true),
		node("arm-down", "arm64", false),
		node("arm-spot", "arm64", true, spot),
		node("s390-cordoned", "s390x", true),
	)
	cordoned, _ := cs.Tracker().Get(corev1.SchemeGroupVersion.WithResource("nodes"), "", "s390-cordoned")
	cordoned.(*corev1.Node).Spec.Unschedulable = true
	_ = cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("nodes"), cordoned, "")

	r := NewRunner(clientsetAPI{cs}, nil, Options{Image: "kiln", NodeSelector: map[string]string{"node-pool": "builders"}}, RunnerConfig{BuildID: "t"}, nil)
	ex, err := r.Decide(t.Context(), specs.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil || ex.Mode != runner.Native || !strings.Contains(ex.Where, "2 Ready") {
		t.Errorf("amd64: %+v, %v; want native on 2 Ready nodes", ex, err)
	}
	for _, arch := range []string{"arm64", "s390x", "riscv64"} {
		_, err = r.Decide(t.Context(), specs.Platform{OS: "linux", Architecture: arch})
		if !errors.Is(err, runner.ErrNoNode) || !strings.Contains(err.Error(), "kubernetes.io/arch="+arch) {
			t.Errorf("%s: %v; want ErrNoNode naming the labels", arch, err)
		}
	}
	tolerant := NewRunner(clientsetAPI{cs}, nil, Options{Image: "kiln", Tolerations: []Toleration{{Key: "spot", Operator: "Exists"}}}, RunnerConfig{BuildID: "t"}, nil)
	if ex, err := tolerant.Decide(t.Context(), specs.Platform{OS: "linux", Architecture: "arm64"}); err != nil || !strings.Contains(ex.Where, "1 Ready") {
		t.Errorf("arm64 with the spot taint tolerated: %+v, %v", ex, err)
	}
}

// TestPreflightForbidden: without the permissions, one error lists them.
func TestPreflightForbidden(t *testing.T) {
	cs := fake.NewSimpleClientset() //nolint:staticcheck // the field-managed fake has no SelfSubjectAccessReview
	allow := map[string]bool{"get/pods/log": true, "list/nodes/": true}
	cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rev := a.(k8stesting.CreateAction).GetObject().(*authv1.SelfSubjectAccessReview)
		ra := rev.Spec.ResourceAttributes
		rev.Status.Allowed = allow[ra.Verb+"/"+ra.Resource+"/"+ra.Subresource]
		return true, rev, nil
	})
	r := NewRunner(clientsetAPI{cs}, nil, Options{Namespace: "ci"}, RunnerConfig{BuildID: "t"}, nil)
	err := r.Preflight(t.Context())
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "create jobs in namespace ci") ||
		strings.Contains(err.Error(), "pods/log") || !strings.Contains(err.Error(), "kiln render rbac") {
		t.Errorf("Preflight = %v", err)
	}
	for k := range allow {
		delete(allow, k)
	}
	for _, a := range needed {
		allow[a.Verb+"/"+a.Resource+"/"+a.Subresource] = true
	}
	if err := r.Preflight(t.Context()); err != nil {
		t.Errorf("with every permission: %v", err)
	}
}
