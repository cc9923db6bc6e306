#!/usr/bin/env bash
# Installs the Debian packages the lab needs when they are missing: the PostgreSQL 15 server, Java 17 and Maven, and
# for the lab's Kubernetes (lab/kube.py) etcd, containerd, runc, the CNI plugins, buildah, mmdebstrap (the images'
# Debian base, lab/images.py), iproute2 and openssl; each region's container registry (docker-registry, distribution
# 2.8) and skopeo to push and replicate to it (lab/registry.py); Chromium for the readiness page's browser test.
set -euo pipefail
missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15 postgresql-client-15)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
# Maven resolves the Kafka jars (and their dependencies) from Maven Central: lab/jars.py.
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "set-up: missing ${missing[*]}; run 'sudo apt-get install ${missing[*]}' and retry" >&2
    exit 2
  fi
  echo "set-up: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian package starts a default cluster; the lab runs its own, so stop it to free port 5432.
  if command -v pg_ctlcluster >/dev/null 2>&1; then pg_ctlcluster 15 main stop 2>/dev/null || true; fi
  # Likewise etcd, containerd and the registry: the lab runs its own, inside its own network namespace or on loopback.
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now etcd containerd docker-registry 2>/dev/null || true
  fi
fi
id postgres >/dev/null 2>&1 || { echo "set-up: no 'postgres' user after install" >&2; exit 2; }
