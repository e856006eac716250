// Package kube is kiln's Kubernetes runner: it builds each platform of an
// image as a Job on a node of that platform's architecture, and it makes
// the objects kiln render prints (the per-platform Job, the warm CronJob,
// RBAC, the cache PVC) with the same code, so that what is rendered is what
// runs. client-go and k8s.io/api are imported here and nowhere else in the
// builder.
package kube
