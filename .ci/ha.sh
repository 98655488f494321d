#!/usr/bin/env bash
# CI, high availability: install what tests/ha needs (Patroni, etcd, PostgreSQL 15 from
# Debian). Idempotent, and quick when everything is already there (no apt-get at all).
# Run as root on Debian 12 (bookworm): Patroni 3.0 and etcd 3.4 as Debian ships them.
set -euo pipefail

needed=(patroni etcd-server postgresql-15)
missing=()
for pkg in "${needed[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
        || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "ha.sh: missing ${missing[*]}; run as root to install them" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # The packages' own services (etcd on :2379, a main PostgreSQL cluster) must not start:
    # the tests run their own, as the unprivileged server user, on free ports.
    cleanup=()
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        cleanup+=(/usr/sbin/policy-rc.d)
    fi
    trap 'rm -f "${cleanup[@]}"' EXIT
    apt-get update -qq
    if [ -f /etc/postgresql-common/createcluster.conf ] || apt-get install -y -qq \
        --no-install-recommends postgresql-common >/dev/null; then
        sed -i 's/^#\?create_main_cluster.*/create_main_cluster = false/' \
            /etc/postgresql-common/createcluster.conf
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for prog in /usr/bin/patroni /usr/bin/etcd /usr/lib/postgresql/15/bin/postgres; do
    [ -x "$prog" ] || { echo "ha.sh: $prog is missing after the install" >&2; exit 1; }
done
echo "ha.sh: $(patroni --version 2>&1 | head -1), $(etcd --version 2>&1 | head -1)," \
    "$(/usr/lib/postgresql/15/bin/postgres --version)"
