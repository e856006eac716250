//go:build linux

package kube

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FakePodLog is the log of the containers of a pod on a fake node that has
// no LogAnnotation.
const FakePodLog = "kiln test cluster: this pod ran on a kwok fake node; no container ran"

// LogAnnotation, set on a pod that runs on a fake node, is the log of each
// of its containers (a newline is added if it does not end with one).
const LogAnnotation = "kiln.test/kwok-log"

// fakeLogServer answers the apiserver's log requests for pods on fake
// nodes (GET /containerLogs/NS/POD/CONTAINER), as a kubelet would, with the
// pod's LogAnnotation or FakePodLog. The whole log is sent at once and the
// response ends, with or without follow: kwok's own log server follows its
// file forever. It listens on 127.0.0.1 with a certificate of the cluster
// CA and accepts only clients with a certificate of the cluster CA (the
// apiserver's kubelet client).
func (c *Cluster) startFakeLogServer(port int, serving certPair) error {
	cert, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CAPEM)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("fake nodes' log server: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", func(w http.ResponseWriter, r *http.Request) {
		pod, err := c.Client.CoreV1().Pods(r.PathValue("ns")).Get(r.Context(), r.PathValue("pod"), metav1.GetOptions{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		log, ok := pod.Annotations[LogAnnotation]
		if !ok {
			log = FakePodLog
		}
		if !strings.HasSuffix(log, "\n") {
			log += "\n"
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(log))
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS12,
		},
	}
	c.fakeLogs = srv
	go func() { _ = srv.ServeTLS(l, "", "") }()
	return nil
}
