#!/usr/bin/env bash
# Build PgBouncer 1.24.1 (the first Debian release with prepared statements in
# transaction mode, Debian 13's package) from Debian's source archive, for
# `npm run test:pgbouncer`. Debian 12 ships 1.18, which cannot keep prepared
# statements; the registries here have no newer build, so this compiles one.
#   bash scripts/pgbouncer-build.sh            -> .cache/pgbouncer-1.24.1/bin/pgbouncer
# Needs gcc, make, pkg-config, libevent-dev and libssl-dev (apt-get; .ci/run
# installs them). Idempotent: an existing build is kept. About 15 s of CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.24.1
sha256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
prefix="${TRELLIS_PGBOUNCER_PREFIX:-$PWD/.cache/pgbouncer-$version}"
if [ -x "$prefix/bin/pgbouncer" ]; then
  echo "$prefix/bin/pgbouncer"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
curl -fsS -m 120 -o "$work/src.tar.gz" \
  "http://deb.debian.org/debian/pool/main/p/pgbouncer/pgbouncer_${version}.orig.tar.gz"
echo "$sha256  $work/src.tar.gz" | sha256sum -c --quiet -
mkdir "$work/src"
tar xzf "$work/src.tar.gz" -C "$work/src" --strip-components=1
(
  cd "$work/src"
  ./configure --prefix="$prefix" --without-cares --without-pam --without-systemd --without-ldap >"$work/configure.log" 2>&1 \
    || { cat "$work/configure.log" >&2; exit 1; }
  make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -50 "$work/make.log" >&2; exit 1; }
  make install >"$work/install.log" 2>&1 || { tail -50 "$work/install.log" >&2; exit 1; }
)
echo "$prefix/bin/pgbouncer"
