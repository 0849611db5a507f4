#!/usr/bin/env bash
# Builds Skiff's Debian package: every binary in /usr/bin, the systemd units (and the
# certificate renewal timer) in /lib/systemd/system, the operators' flag files in /etc/default (conffiles). The result is
# <target dir>/debian/skiff_<version>_<arch>.deb, the version being the workspace's.
#
#   deploy/package.sh                    cargo build --release, then package target/release/
#   deploy/package.sh --no-build         package the binaries already in target/release/
#   deploy/package.sh --bin-dir DIR      package the binaries in DIR (no build), e.g.
#                                        target/debug for a quick test package
#   deploy/package.sh --out-dir DIR      write the .deb to DIR instead of target/debian
#   deploy/package.sh --fast             compress with gzip -1 instead of xz (minutes faster
#                                        on debug binaries: for test packages)
#
# SKIFF_BIN_DIR=DIR means --bin-dir DIR. CARGO_TARGET_DIR is honoured as cargo honours it.
# Needs dpkg-deb, dpkg-shlibdeps (dpkg-dev) and strip (binutils); plain dpkg-deb rather than
# cargo-deb so that building the package needs nothing beyond Debian's own tools.
set -euo pipefail
cd "$(dirname "$0")/.."

BINARIES=(skiff-apiserver skiff-scheduler skiff-controller-manager skiff-kubelet skiff-proxy skiffctl skiffadm)
UNITS=(skiff-apiserver skiff-scheduler skiff-controller-manager skiff-kubelet skiff-proxy)
# The control plane's daily certificate renewal (no /etc/default file: it takes no flags).
RENEW_UNITS=(skiff-certs-renew.service skiff-certs-renew.timer)

target_dir=${CARGO_TARGET_DIR:-target}
bin_dir=${SKIFF_BIN_DIR:-}
build=1
out_dir=
compression=(-Zxz)
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0 ;;
        --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift ;;
        --bin-dir=*) bin_dir=${1#--bin-dir=} ;;
        --out-dir) out_dir=${2:?--out-dir needs a directory}; shift ;;
        --out-dir=*) out_dir=${1#--out-dir=} ;;
        --fast) compression=(-Zgzip -z1) ;;
        -h|--help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$bin_dir" ] && build=0
bin_dir=${bin_dir:-$target_dir/release}
out_dir=${out_dir:-$target_dir/debian}

for tool in dpkg-deb dpkg-shlibdeps strip; do
    command -v "$tool" >/dev/null || {
        echo "package.sh: $tool is missing: apt-get install dpkg-dev binutils" >&2
        exit 1
    }
done

if [ "$build" = 1 ]; then
    echo "== cargo build --release (${BINARIES[*]})"
    cargo build --release --quiet $(printf -- '-p %s ' "${BINARIES[@]}")
fi
for b in "${BINARIES[@]}"; do
    [ -x "$bin_dir/$b" ] || {
        echo "package.sh: $bin_dir/$b is missing: build it (cargo build --release -p $b) or drop --no-build/--bin-dir" >&2
        exit 1
    }
done

# The workspace's version; Cargo's pre-release dash becomes Debian's tilde, which sorts a
# 0.2.0-rc.1 before 0.2.0 as Cargo does.
version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "package.sh: no version in Cargo.toml's [workspace.package]" >&2; exit 1; }
version=${version//-/\~}
arch=$(dpkg --print-architecture)

mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
work=$(mktemp -d "$out_dir/.skiff-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

# Binaries stripped as Debian strips them (dh_strip): a panic still says where it happened,
# its backtrace no longer names functions.
install -d -m 0755 "$root/usr/bin"
for b in "${BINARIES[@]}"; do
    install -m 0755 "$bin_dir/$b" "$root/usr/bin/$b"
    strip --remove-section=.comment --remove-section=.note "$root/usr/bin/$b"
done

install -d -m 0755 "$root/lib/systemd/system" "$root/etc/default" "$root/usr/share/doc/skiff"
for u in "${UNITS[@]}"; do
    install -m 0644 "deploy/systemd/$u.service" "$root/lib/systemd/system/$u.service"
    install -m 0644 "deploy/systemd/default/$u" "$root/etc/default/$u"
done
for u in "${RENEW_UNITS[@]}"; do
    install -m 0644 "deploy/systemd/$u" "$root/lib/systemd/system/$u"
done
# The units' Documentation= points here.
install -m 0644 README.md "$root/usr/share/doc/skiff/README.md"
install -m 0644 deploy/debian/copyright "$root/usr/share/doc/skiff/copyright"
# A native package's changelog (Debian's format, one entry per version), dated by the last
# commit so that the same sources make the same package.
date=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
printf 'skiff (%s) unstable; urgency=medium\n\n  * Skiff %s.\n\n -- %s  %s\n' \
    "$version" "$version" "$(sed -n 's/^Maintainer: //p' deploy/debian/control)" "$date" |
    gzip -9n >"$root/usr/share/doc/skiff/changelog.gz"
chmod 0644 "$root/usr/share/doc/skiff/changelog.gz"

install -d -m 0755 "$root/usr/share/lintian/overrides"
install -m 0644 deploy/debian/lintian-overrides "$root/usr/share/lintian/overrides/skiff"

install -d -m 0755 "$root/DEBIAN"
for script in postinst prerm postrm; do
    install -m 0755 "deploy/debian/$script" "$root/DEBIAN/$script"
done
for u in "${UNITS[@]}"; do echo "/etc/default/$u"; done >"$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"

# The shared libraries the binaries link (glibc, libgcc_s) with the versions their symbols
# need; dpkg-shlibdeps reads a debian/control, so it gets a minimal one.
mkdir -p "$work/shlibs/debian"
printf 'Source: skiff\n\nPackage: skiff\nArchitecture: any\n' >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O $(printf -- "-e$root/usr/bin/%s " "${BINARIES[@]}") 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "package.sh: dpkg-shlibdeps found no libraries" >&2; exit 1; }

installed_size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SHLIBS@/$shlibs/" \
    -e "s/@INSTALLED_SIZE@/$installed_size/" deploy/debian/control >"$root/DEBIAN/control"
chmod 0644 "$root/DEBIAN/control"

deb=$out_dir/skiff_${version}_${arch}.deb
dpkg-deb --build --root-owner-group "${compression[@]}" "$root" "$deb" >/dev/null
echo "$deb"
