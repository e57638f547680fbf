// Package k8s tests the Kubernetes deployment of Sluice: the Helm chart in
// deploy/k8s/sluice and the plain manifests rendered from it in
// deploy/k8s/manifests.
//
// The tests render the chart with the Helm SDK for several value sets
// (deploy/k8s/sluice/ci/*.yaml), decode every object strictly into its typed
// Go struct, check what must hold across objects (selectors match pod labels,
// Services target real container ports, probes, resources, security
// contexts, readiness tied to leadership), check that values.schema.json
// refuses bad values, and then apply everything to a real kube-apiserver:
// server-side apply with strict field validation (dry run) and a real helm
// install, upgrade and uninstall.
//
// The kube-apiserver is built once from the nested module ./tools and cached
// in $SLUICE_TOOLS_DIR/kube-apiserver-v1.35.4/ (default
// ~/.cache/sluice/tools/...); its etcd runs embedded in the test process.
package k8s
