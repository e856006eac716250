package kube

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func testOptions() Options {
	secs := int64(60)
	return Options{
		Namespace: "ci", Image: "registry.example.com/tools/kiln:1.0", ImagePullSecrets: []string{"pull"},
		ServiceAccount: "kiln-builder", NodeSelector: map[string]string{"node-pool": "builders", "kubernetes.io/arch": "s390x"},
		Tolerations:       []Toleration{{Key: "arch", Value: "arm64", Effect: "NoSchedule"}, {Key: "spot", Operator: "Exists", Effect: "NoExecute", Seconds: &secs}},
		Requests:          map[string]string{"cpu": "2", "memory": "4Gi"},
		Limits:            map[string]string{"memory": "8Gi"},
		Labels:            map[string]string{"team": "platform"},
		Annotations:       map[string]string{"example.com/owner": "release"},
		CredentialsSecret: "regcred", CacheClaim: "kiln-cache", CacheSize: "50Gi",
		ActiveDeadline: 30 * time.Minute, TTLAfterFinished: time.Hour, WarmSchedule: "0 4 * * *",
		Insecure: []string{"registry.local:5000"}, SkipTLSVerify: []string{"registry.staging:8443"},
	}
}

func testSpec() BuildSpec {
	return BuildSpec{
		BuildID: "b1", Image: "api", Platform: specs.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"},
		Context:    "blob://registry.example.com/acme/api@sha256:" + strings.Repeat("0", 64),
		Dockerfile: "build/Dockerfile", Target: "runtime",
		BuildArgs: map[string]string{"VERSION": "1.4.2", "A": "b"}, Labels: map[string]string{"org.opencontainers.image.source": "x"},
		Repository: "registry.example.com/acme/api", Bases: []string{"golang:1.23", "gcr.io/distroless/static"},
	}
}

// TestRenderGolden: what kiln render all writes for a build.toml that sets
// every key.
func TestRenderGolden(t *testing.T) {
	in := RenderInput{
		Options: testOptions(), Jobs: []BuildSpec{testSpec()},
		WarmImages:    []string{"golang:1.23", "busybox:1.36"},
		WarmPlatforms: []specs.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}},
	}
	got, err := Render(in, []string{"all"})
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "all.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if string(got) != string(want) {
		t.Errorf("render all differs from %s (go test -update to accept):\n%s", golden, got)
	}
	again, _ := Render(in, []string{"all"})
	if string(again) != string(got) {
		t.Error("two renders of the same input differ")
	}
}

// TestBuildJob: the properties the runner relies on, whatever the options.
func TestBuildJob(t *testing.T) {
	job, err := BuildJob(testSpec(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	pod := job.Spec.Template.Spec
	if pod.NodeSelector[corev1.LabelArchStable] != "arm64" || pod.NodeSelector[corev1.LabelOSStable] != "linux" || pod.NodeSelector["node-pool"] != "builders" {
		t.Errorf("nodeSelector %v: want the platform's os and arch, never the options'", pod.NodeSelector)
	}
	if len(job.Name) > 63 || len(validation.IsDNS1123Label(job.Name)) > 0 {
		t.Errorf("job name %q is not a DNS label", job.Name)
	}
	for k, v := range job.Labels {
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("label %s=%q: %v", k, v, errs)
		}
	}
	if pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("the pod must run under the runtime's default seccomp profile")
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s is a hostPath", v.Name)
		}
	}
	for _, c := range append(pod.InitContainers, pod.Containers...) {
		sc := c.SecurityContext
		if sc == nil || *sc.Privileged || *sc.AllowPrivilegeEscalation || sc.Capabilities != nil {
			t.Errorf("container %s: %+v; want unprivileged, no escalation, no added capability", c.Name, sc)
		}
		for _, a := range c.Args {
			if strings.Contains(a, "regcred") || strings.Contains(strings.ToLower(a), "password") {
				t.Errorf("container %s: a credential in its args: %q", c.Name, a)
			}
		}
	}
	if len(pod.InitContainers) != 1 || !strings.Contains(strings.Join(pod.InitContainers[0].Args, " "), "--platform linux/arm64 --image golang:1.23 --image gcr.io/distroless/static") {
		t.Errorf("warm init container: %v", pod.InitContainers)
	}
	build := pod.Containers[0]
	if build.TerminationMessagePath != TerminationPath || !strings.Contains(strings.Join(build.Args, " "), "--metadata-file "+TerminationPath) {
		t.Errorf("the build's metadata must be its termination message: %v", build.Args)
	}
	if *job.Spec.BackoffLimit != 0 || pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Error("a failed build must not be retried")
	}

	long := testSpec()
	long.Image = strings.Repeat("very-long-image-name-", 5)
	j, err := BuildJob(long, testOptions())
	if err != nil || len(j.Name) > 63 || !strings.HasSuffix(j.Name, "-linux-arm64-b1") {
		t.Errorf("a long image name: job %q, %v", j.Name, err)
	}
	noBases := testSpec()
	noBases.Bases = nil
	if j, _ := BuildJob(noBases, testOptions()); len(j.Spec.Template.Spec.InitContainers) != 0 {
		t.Error("no base image, no warm init container")
	}
	if _, err := BuildJob(testSpec(), Options{}); err == nil {
		t.Error("no kiln image: want an error")
	}
	bad := testOptions()
	bad.Requests = map[string]string{"cpu": "two"}
	if _, err := BuildJob(testSpec(), bad); err == nil || !strings.Contains(err.Error(), "runner.kubernetes.requests.cpu") {
		t.Errorf("a bad quantity: %v", err)
	}
}
