#!/usr/bin/env bash
# Regenerates deploy/k8s/configmap.yaml from conf/gateway.toml and conf/auth.toml (the test in
# tests/deploy.rs fails when they drift apart).
set -euo pipefail
cd "$(dirname "$0")/.."
indent() { sed -e 's/^\(.\)/    \1/' "$1"; }
{
  cat <<'HEAD'
# The configs of conf/, verbatim (tests/deploy.rs keeps them identical): the host names in
# them (redis, postgres, auth, demo) are the Services of this namespace, as in compose.
# Secrets are not here: they come from the `authflow-secrets` Secret (secret.example.yaml).
# Regenerate with scripts/k8s-configmap.sh after editing conf/.
apiVersion: v1
kind: ConfigMap
metadata:
  name: authflow-config
  labels:
    app.kubernetes.io/part-of: authflow
data:
  gateway.toml: |
HEAD
  indent conf/gateway.toml
  echo "  auth.toml: |"
  indent conf/auth.toml
} > deploy/k8s/configmap.yaml
