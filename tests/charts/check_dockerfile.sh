#!/usr/bin/env bash
# check_dockerfile.sh: what of the Dockerfile can be checked without an image builder (this
# machine has none, so the image itself is never built here):
#  - every shared library the built agent loads (ldd build/vigil) comes, on this Debian 12, from
#    a package the runtime stage installs, or from one of their dependencies, or from the base
#    image's essential set (libc6, libgcc-s1);
#  - every package either stage names exists in Debian 12's archive (apt-cache);
#  - the build stage installs every -dev package .ci/setup.sh installs to build.
# Usage: check_dockerfile.sh BUILD_DIR
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:?usage: check_dockerfile.sh BUILD_DIR}
dockerfile=$repo/Dockerfile
fail=0
die() { echo "check_dockerfile: $*" >&2; fail=1; }

# The packages of the apt-get install in stage N (1: build, 2: runtime).
stage_packages() {
  awk -v want="$1" '/^FROM /{stage++} stage == want' "$dockerfile" |
    sed -n '/apt-get install/,/rm -rf/p' | tr ' \\' '\n\n' |
    grep -E '^[a-z0-9][a-z0-9.+-]+$' | grep -vE '^(apt-get|install|update|rm|rf|y|q|no|and)$' | sort -u
}
mapfile -t build_pkgs < <(stage_packages 1)
mapfile -t run_pkgs < <(stage_packages 2)
((${#build_pkgs[@]} > 10)) || die "could not read the build stage's packages (${#build_pkgs[@]})"
((${#run_pkgs[@]} > 5)) || die "could not read the runtime stage's packages (${#run_pkgs[@]})"

# One query for all (each apt-cache call costs a second); one by one only to name a missing one.
if ! apt-cache show "${build_pkgs[@]}" "${run_pkgs[@]}" >/dev/null 2>&1; then
  for p in "${build_pkgs[@]}" "${run_pkgs[@]}"; do
    apt-cache show "$p" >/dev/null 2>&1 || die "package '$p' named in the Dockerfile is not in this Debian's archive"
  done
fi

closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
  --no-enhances "${run_pkgs[@]}" 2>/dev/null | grep -E '^[a-z0-9]' | sed 's/:.*//' | sort -u)
[[ -x $build/vigil ]] || die "no agent binary at $build/vigil"
libs=0
while read -r lib; do
  [[ -n $lib ]] || continue
  libs=$((libs + 1))
  pkg=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | head -1 | cut -d: -f1) || true
  [[ -n $pkg ]] || pkg=$(dpkg -S "$lib" 2>/dev/null | head -1 | cut -d: -f1) || true
  [[ -n $pkg ]] || { die "no package owns $lib"; continue; }
  case $pkg in libc6 | libgcc-s1) continue ;; esac
  grep -qx "$pkg" <<<"$closure" || die "$lib comes from $pkg, which the runtime stage neither installs nor pulls in"
done < <(ldd "$build/vigil" | awk '/=>/ {print $3}')
((libs > 5)) || die "ldd listed only $libs libraries"

# Build dependencies: the -dev packages the CI setup installs must be in the build stage.
setup=$repo/.ci/setup.sh
if [[ -f $setup ]]; then
  for p in $(grep -oE '\b(lib[a-z0-9.+-]*-dev|googletest|clang|bpftool|cmake)\b' "$setup" | sort -u); do
    printf '%s\n' "${build_pkgs[@]}" | grep -qx "$p" || die "the build stage does not install $p (.ci/setup.sh does)"
  done
fi

if ((fail)); then exit 1; fi
echo "check_dockerfile: ${#build_pkgs[@]} build and ${#run_pkgs[@]} runtime packages exist; $libs libraries of $build/vigil covered; image not built (no builder here)"
