package kube

import (
	"context"
	"fmt"
	"io"

	authv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// API is what the runner asks of the cluster: the six calls build-all
// makes. The cluster's is a REST client per API group (Connection.API),
// over a scheme of the three groups the calls use: client-go's full
// clientset registers every group of Kubernetes when kiln starts, about
// 10 ms of every kiln command's start for calls only build-all makes.
type API interface {
	ListNodes(ctx context.Context) (*corev1.NodeList, error)
	ReviewAccess(ctx context.Context, rev *authv1.SelfSubjectAccessReview) (*authv1.SelfSubjectAccessReview, error)
	CreateJob(ctx context.Context, job *batchv1.Job) (*batchv1.Job, error)
	DeleteJob(ctx context.Context, namespace, name string, opts metav1.DeleteOptions) error
	WatchPods(ctx context.Context, namespace string, opts metav1.ListOptions) (watch.Interface, error)
	PodLog(ctx context.Context, namespace, pod string, opts *corev1.PodLogOptions) (io.ReadCloser, error)
}

// restAPI is API over REST clients of the core, batch and authorization
// groups.
type restAPI struct {
	core, batch, authz rest.Interface
	params             runtime.ParameterCodec
}

// newRESTAPI makes the clients for cfg.
func newRESTAPI(cfg *rest.Config) (*restAPI, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, batchv1.AddToScheme, authv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	codecs := serializer.NewCodecFactory(scheme)
	client := func(gv schema.GroupVersion, apiPath string) (rest.Interface, error) {
		c := rest.CopyConfig(cfg)
		c.GroupVersion, c.APIPath = &gv, apiPath
		c.NegotiatedSerializer = codecs.WithoutConversion()
		if c.UserAgent == "" {
			c.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		rc, err := rest.RESTClientFor(c)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client (%s): %w", gv, err)
		}
		return rc, nil
	}
	a := &restAPI{params: runtime.NewParameterCodec(scheme)}
	var err error
	if a.core, err = client(corev1.SchemeGroupVersion, "/api"); err != nil {
		return nil, err
	}
	if a.batch, err = client(batchv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	if a.authz, err = client(authv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *restAPI) ListNodes(ctx context.Context) (*corev1.NodeList, error) {
	list := &corev1.NodeList{}
	err := a.core.Get().Resource("nodes").VersionedParams(&metav1.ListOptions{}, a.params).Do(ctx).Into(list)
	return list, err
}

func (a *restAPI) ReviewAccess(ctx context.Context, rev *authv1.SelfSubjectAccessReview) (*authv1.SelfSubjectAccessReview, error) {
	out := &authv1.SelfSubjectAccessReview{}
	err := a.authz.Post().Resource("selfsubjectaccessreviews").VersionedParams(&metav1.CreateOptions{}, a.params).Body(rev).Do(ctx).Into(out)
	return out, err
}

func (a *restAPI) CreateJob(ctx context.Context, job *batchv1.Job) (*batchv1.Job, error) {
	out := &batchv1.Job{}
	err := a.batch.Post().Namespace(job.Namespace).Resource("jobs").VersionedParams(&metav1.CreateOptions{}, a.params).Body(job).Do(ctx).Into(out)
	return out, err
}

func (a *restAPI) DeleteJob(ctx context.Context, namespace, name string, opts metav1.DeleteOptions) error {
	return a.batch.Delete().Namespace(namespace).Resource("jobs").Name(name).Body(&opts).Do(ctx).Error()
}

func (a *restAPI) WatchPods(ctx context.Context, namespace string, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return a.core.Get().Namespace(namespace).Resource("pods").VersionedParams(&opts, a.params).Watch(ctx)
}

func (a *restAPI) PodLog(ctx context.Context, namespace, pod string, opts *corev1.PodLogOptions) (io.ReadCloser, error) {
	return a.core.Get().Namespace(namespace).Resource("pods").Name(pod).SubResource("log").VersionedParams(opts, a.params).Stream(ctx)
}
