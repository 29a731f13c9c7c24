#!/usr/bin/env bash
# make test-aarch64: the runtime tests on an emulated arm64 Debian, once per CPU.
#
#   1) host: qemu-user-static >= 9 (bookworm-backports on bookworm: it emulates
#      /proc/cpuinfo, so llvmlite sees the emulated CPU) and mmdebstrap
#   2) binfmt_misc: qemu-aarch64 registered with the F flag (works in a chroot)
#   3) arm64 bookworm root in $SEPRT_AARCH64_DIR (default .cache/aarch64, ignored
#      by git), built once; a venv in it with the runtime's aarch64 wheels
#   4) for each CPU in $SEPRT_AARCH64_CPUS: QEMU_CPU=cpu, NUMBA_CPU_NAME=cpu,
#      one pytest run over $SEPRT_AARCH64_TESTS with SEPRT_TEST_SHAPES=few
#
# Needs root (apt-get, mount, chroot). Anything missing fails with the reason.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$PWD
DIR=${SEPRT_AARCH64_DIR:-$SRC/.cache/aarch64}
ROOTFS=$DIR/rootfs
CPUS=${SEPRT_AARCH64_CPUS:-cortex-a72 cortex-a76}
TESTS=${SEPRT_AARCH64_TESTS:-tests/test_format.py tests/test_arch.py tests/test_engine.py tests/test_model.py tests/test_cli.py tests/test_isa.py tests/test_aarch64_golden.py tests/test_stack.py}
# left out: tests that need LiteRT (no part of the runtime), and the x86 test that
# recompiles the engine for a CPU without AVX-512 (here every run is such a CPU)
DESELECT=${SEPRT_AARCH64_DESELECT:-not tflite and not generic_cpu}
SUITE=${SEPRT_AARCH64_SUITE:-bookworm}
MIRROR=${SEPRT_AARCH64_MIRROR:-http://deb.debian.org/debian}

die() { echo "test-aarch64: FAILED: $*" >&2; exit 1; }
step() { echo "test-aarch64: $* [$(date +%T)]"; }
now() { date +%s; }

[ "$(uname -s)" = Linux ] || die "needs Linux (binfmt_misc, chroot); this is $(uname -s)"
[ "$(uname -m)" = x86_64 ] || die "emulates aarch64 on an x86_64 host; this host is $(uname -m) (on aarch64, run 'make test')"
[ "$(id -u)" = 0 ] || die "must run as root: it installs qemu-user-static and mmdebstrap with apt-get, registers qemu-aarch64 with binfmt_misc and chroots into an arm64 root (try: sudo make test-aarch64)"
command -v unshare >/dev/null && command -v chroot >/dev/null || die "needs unshare and chroot (util-linux, coreutils)"

# ---- 1) host packages
qemu_major() { qemu-aarch64-static --version 2>/dev/null | sed -n '1s/.*version \([0-9]*\).*/\1/p'; }
if [ "$(qemu_major)" = "" ] || [ "$(qemu_major)" -lt 9 ] || ! command -v mmdebstrap >/dev/null; then
  command -v apt-get >/dev/null || die "qemu-user-static >= 9 and mmdebstrap are missing and there is no apt-get to install them"
  step "installing qemu-user-static (>= 9) and mmdebstrap"
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  if [ "$codename" = bookworm ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/seprt-backports.list
  fi
  apt-get update -qq
  target=(); [ "$codename" = bookworm ] && target=(-t bookworm-backports)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${target[@]}" qemu-user-static >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
  [ "$(qemu_major)" -ge 9 ] || die "qemu-user-static $(qemu_major) installed, need >= 9 (its /proc/cpuinfo emulation names the emulated CPU)"
fi

# ---- 2) binfmt_misc
BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e $BINFMT/register ]; then
  mount -t binfmt_misc binfmt_misc $BINFMT 2>/dev/null \
    || die "binfmt_misc is not mounted and cannot be mounted here (a container without CAP_SYS_ADMIN?); arm64 programs cannot run"
fi
conf=/usr/lib/binfmt.d/qemu-aarch64.conf
[ -f $conf ] || die "$conf missing: qemu-user-static did not install its binfmt entry"
interp=$(cut -d: -f7 $conf)
if [ -e $BINFMT/qemu-aarch64 ]; then
  # re-register when the entry lacks F (useless in a chroot) or is not this qemu's
  if ! grep -q "^flags:.*F" $BINFMT/qemu-aarch64 || ! grep -qx "interpreter $interp" $BINFMT/qemu-aarch64; then
    echo -1 > $BINFMT/qemu-aarch64
  fi
fi
if [ ! -e $BINFMT/qemu-aarch64 ]; then
  step "registering qemu-aarch64 with binfmt_misc (flags OPF)"
  tr -d '\n' < $conf > $BINFMT/register || die "cannot register qemu-aarch64 with binfmt_misc"
fi
grep -q '^enabled' $BINFMT/qemu-aarch64 || die "binfmt_misc entry qemu-aarch64 is disabled"
grep -q "^flags:.*F" $BINFMT/qemu-aarch64 || die "binfmt_misc entry qemu-aarch64 lacks the F flag: it would not work inside the chroot"

# ---- 3) arm64 root and venv (cached)
# run CMD in the arm64 root, with /proc, /dev and this checkout (at /src) mounted
# in a private mount namespace: nothing stays mounted when it exits
in_root() {
  unshare --mount --propagation private -- sh -c '
    set -e; r=$1; src=$2; shift 2
    mount -t proc proc "$r/proc"; mount --rbind /dev "$r/dev"
    mkdir -p "$r/src"; mount --bind "$src" "$r/src"
    exec chroot "$r" "$@"' sh "$ROOTFS" "$SRC" "$@"
}

t0=$(now)
if [ ! -e "$ROOTFS/.seprt-rootfs-ok" ]; then
  step "building the arm64 $SUITE root in $ROOTFS (mmdebstrap, once)"
  rm -rf --one-file-system "$ROOTFS"; mkdir -p "$DIR"   # never into a leftover mount
  setsid -w mmdebstrap --quiet --arch=arm64 --variant=minbase --include=python3-venv,ca-certificates \
    "$SUITE" "$ROOTFS" "$MIRROR" || die "mmdebstrap failed (network? binfmt?)"
  touch "$ROOTFS/.seprt-rootfs-ok"
  step "root built in $(( $(now) - t0 )) s"
fi
# the root resolves names and trusts certificates as the host does (a proxy with its own CA included)
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp -L /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
[ "$(in_root uname -m)" = aarch64 ] || die "programs in the arm64 root do not run as aarch64"

# the venv: the project's runtime dependencies (aarch64 wheels only, never a
# source build) and the test tools, rebuilt when pyproject.toml changes
stamp=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$ROOTFS/opt/venv/.seprt-$stamp" ]; then
  t1=$(now)
  step "installing numpy, numba, llvmlite, pillow, pytest, hypothesis from aarch64 wheels"
  rm -rf --one-file-system "$ROOTFS/opt/venv"
  in_root python3 -m venv /opt/venv
  in_root env PIP_CACHE_DIR=/var/cache/pip /opt/venv/bin/python -m pip install -q --disable-pip-version-check \
    --only-binary=:all: "pytest>=7" "hypothesis>=6" "setuptools>=68" wheel \
    || die "pip install of the test tools failed"
  # the project itself, editable: its dependencies from pyproject.toml, as wheels
  in_root env PIP_CACHE_DIR=/var/cache/pip /opt/venv/bin/python -m pip install -q --disable-pip-version-check \
    --only-binary=:all: --no-build-isolation -e /src || die "pip install -e . (numpy, numba, pillow) failed"
  touch "$ROOTFS/opt/venv/.seprt-$stamp"
  step "venv installed in $(( $(now) - t1 )) s"
fi
in_root /opt/venv/bin/python -c 'import numpy, numba, llvmlite, PIL; print("test-aarch64: numpy", numpy.__version__, "numba", numba.__version__, "llvmlite", llvmlite.__version__, "pillow", PIL.__version__)'

# ---- 4) one pytest run per emulated CPU
run_cpu() {   # run_cpu CPU: one pytest run, QEMU_CPU = NUMBA_CPU_NAME = CPU
  local cpu=$1 t2 seen r
  t2=$(now)
  step "=== $cpu: pytest -k '$DESELECT' $TESTS"
  # the CPU qemu emulates, the CPU LLVM compiles for and the one /proc/cpuinfo names must agree
  seen=$(QEMU_CPU=$cpu in_root /opt/venv/bin/python -c 'import llvmlite.binding as ll; print(ll.get_host_cpu_name())')
  if [ "$seen" != "$cpu" ]; then
    echo "test-aarch64: under QEMU_CPU=$cpu llvmlite sees CPU '$seen' (qemu does not emulate /proc/cpuinfo?)" >&2
    return 1
  fi
  set +e
  # SEPRT_AOT=0: numba's JIT, as a Pi without a C compiler runs it (the root has none). Building the
  # compiled engine (kernels/aot.py) takes ~11 min per CPU under qemu; it was checked by hand against
  # the x86 golden logits (docs/raspberry-pi.md), tests/test_aot.py runs on x86
  QEMU_CPU=$cpu in_root env -C /src NUMBA_CPU_NAME="$cpu" NUMBA_CACHE_DIR=/var/cache/numba SEPRT_TEST_SHAPES=few SEPRT_AOT=0 \
    SEPRT_EXPECT_CPU="$cpu" HOME=/root PYTHONDONTWRITEBYTECODE=1 \
    /opt/venv/bin/python -m pytest -q -p no:cacheprovider -k "$DESELECT" $TESTS
  r=$?
  set -e
  step "=== $cpu: pytest exit $r in $(( $(now) - t2 )) s"
  return $r
}

# CPUs in parallel: SEPRT_AARCH64_JOBS (default 2 under CI=true with >= 2 cores, else 1:
# numba compiles on one core, and a shared machine keeps the other)
jobs=${SEPRT_AARCH64_JOBS:-$([ "${CI:-}" = true ] && [ "$(nproc)" -ge 2 ] && echo 2 || echo 1)}
failed=""
if [ "$jobs" -le 1 ]; then
  for cpu in $CPUS; do run_cpu "$cpu" || failed="$failed $cpu"; done
else
  step "running the CPUs in parallel ($jobs jobs); each run's output follows when it ends"
  declare -A pid
  for cpu in $CPUS; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 5; done
    run_cpu "$cpu" > "$DIR/pytest-$cpu.log" 2>&1 & pid[$cpu]=$!
  done
  for cpu in $CPUS; do
    wait "${pid[$cpu]}" || failed="$failed $cpu"
    cat "$DIR/pytest-$cpu.log"
  done
fi
[ -z "$failed" ] || die "pytest failed under:$failed (see above)"
step "passed on: $CPUS"
