//! Checks of everything under `deploy/` (one test binary, as for every
//! crate): the Grafana dashboard's queries (`dashboard`), the kustomize
//! overlays rendered by a real `kubectl kustomize` and validated by
//! kubernetes-validate against the Kubernetes schema (`manifests`), and the
//! Dockerfile (`dockerfile`), and the certificate recipe of deploy/README.md
//! in a real mutual-TLS gRPC handshake (`tls`).

mod dashboard;
mod dockerfile;
mod manifests;
mod tls;
mod util;
