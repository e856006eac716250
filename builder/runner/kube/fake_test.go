package kube

import (
	"context"
	"io"

	authv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// clientsetAPI is API over a client-go clientset: the fake one, in tests.
type clientsetAPI struct{ cs kubernetes.Interface }

func (a clientsetAPI) ListNodes(ctx context.Context) (*corev1.NodeList, error) {
	return a.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
}

func (a clientsetAPI) ReviewAccess(ctx context.Context, rev *authv1.SelfSubjectAccessReview) (*authv1.SelfSubjectAccessReview, error) {
	return a.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, rev, metav1.CreateOptions{})
}

func (a clientsetAPI) CreateJob(ctx context.Context, job *batchv1.Job) (*batchv1.Job, error) {
	return a.cs.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{})
}

func (a clientsetAPI) DeleteJob(ctx context.Context, namespace, name string, opts metav1.DeleteOptions) error {
	return a.cs.BatchV1().Jobs(namespace).Delete(ctx, name, opts)
}

func (a clientsetAPI) WatchPods(ctx context.Context, namespace string, opts metav1.ListOptions) (watch.Interface, error) {
	return a.cs.CoreV1().Pods(namespace).Watch(ctx, opts)
}

func (a clientsetAPI) PodLog(ctx context.Context, namespace, pod string, opts *corev1.PodLogOptions) (io.ReadCloser, error) {
	return a.cs.CoreV1().Pods(namespace).GetLogs(pod, opts).Stream(ctx)
}
