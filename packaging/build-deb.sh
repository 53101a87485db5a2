#!/bin/bash
# `make deb`: build automd_<version>_<arch>.deb from a copy of this checkout and check it with
# lintian (its findings fail the build; accepted ones are overridden, with their reasons, in
# debian/automd.lintian-overrides). Prints the path of the .deb. docs/packaging.md explains it.
#
# Usage: packaging/build-deb.sh [OUTDIR]     (default: the checkout itself)
#
# dpkg-buildpackage writes beside the source tree it builds, so it builds a copy under
# build/deb/: the checkout's parent (other worktrees, say) is left alone. The copy holds what
# git tracks or would track (untracked files included, ignored ones such as .venv not).
set -euo pipefail

checkout=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$checkout}" && cd "${1:-$checkout}" && pwd)
cd "$checkout"

version=$(dpkg-parsechangelog -SVersion)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
work=$checkout/build/deb
src=$work/automd-$version
rm -rf "$work"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard |
    tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$src"

(cd "$src" && dpkg-buildpackage --build=binary --no-sign) > "$work/build.log" 2>&1 || {
    tail -n 60 "$work/build.log" >&2
    echo "dpkg-buildpackage failed; full log: $work/build.log" >&2
    exit 1
}
deb=automd_${version}_${arch}.deb
# Errors and warnings fail the build; info and pedantic tags are only shown.
lintian --fail-on error,warning "$work/$deb" >&2
if [ "$work" != "$out" ]; then
    cp "$work/$deb" "$out/"
fi
echo "$out/$deb"
