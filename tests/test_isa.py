"""Which dot-tile path runs (vnni | avx2 | udot | generic), chosen from the CPU's
real features, and every path forced in turn: the runtime falls back, it
never dies with SIGILL. Under `make test-aarch64` SEPRT_EXPECT_CPU names the
emulated CPU (cortex-a72: no dotprod, cortex-a76: dotprod)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from seprt.kernels import conv, intrinsics
from seprt.kernels.intrinsics import ISAS, dot_isa, has_vnni, hwcaps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "data", "golden", "logits.npz")
EXPECT = {"cortex-a72": "generic", "cortex-a76": "udot"}   # the emulated CPUs of tools/aarch64/run.sh
CPU = os.environ.get("SEPRT_EXPECT_CPU")
AARCH64 = intrinsics.is_aarch64_linux()


def best_here() -> str:
    """The path this machine should pick, from what the tests can see."""
    if CPU:
        return EXPECT[CPU]
    if AARCH64:
        return "udot" if "dotprod" in hwcaps() and os.environ.get("NUMBA_CPU_NAME") != "generic" else "generic"
    return "vnni" if has_vnni() else "avx2" if x86_avx2() else "generic"


def x86_avx2() -> bool:
    """AVX2 on this x86 CPU, as LLVM sees it, and numba's target left at the host."""
    import llvmlite.binding as ll
    return (not AARCH64 and os.environ.get("NUMBA_CPU_NAME", "host") == "host"
            and bool(ll.get_host_cpu_features().get("avx2")))


def runnable_here() -> set:
    """Every path this machine can run: its best, AVX2 under AVX-512 VNNI, and generic."""
    return {best_here(), "generic"} | ({"avx2"} if x86_avx2() else set())


def test_the_path_follows_the_cpu():
    assert dot_isa() == best_here() and dot_isa() in ISAS
    assert {t.isa for t in (conv._tile_p32e, conv._tile_1x32e, conv._tile_p16e, conv._tile_1x16e, conv._tile_p16,
                            conv._tile_1x16)} == {dot_isa()}


def test_hwcaps_are_the_kernels_view_of_the_cpu():
    caps = hwcaps()
    if not AARCH64:
        assert caps is None and intrinsics.GUARDED == []
        return
    assert isinstance(caps, set) and caps <= set(intrinsics._HWCAP_BITS)
    if CPU == "cortex-a72":          # Armv8.0: crc only
        assert "crc" in caps and not caps & {"dotprod", "lse", "rdm", "fullfp16"}
    if CPU == "cortex-a76":          # Armv8.2 + dotprod
        assert {"crc", "lse", "rdm", "fullfp16", "rcpc", "dotprod"} <= caps and "sve" not in caps
    feats = intrinsics._numba_features().split(",")
    assert all("-" + f in feats for f in intrinsics._HWCAP_BITS if f not in caps)   # numba cannot emit them
    assert all("+" + f in feats for f in caps)        # nor miss them (LLVM's cpuinfo parser skips dotprod)


def run_demo(env: dict) -> subprocess.CompletedProcess:
    """A fresh interpreter: the demo model's logits on the golden inputs, checked bit-exact."""
    code = ("import numpy as np, seprt\n"
            "from seprt.kernels.intrinsics import dot_isa\n"
            f"g = np.load({GOLDEN!r})\n"
            "m = seprt.Model(seprt.demo_model_path())\n"
            "assert np.array_equal(m.logits(g['x']), g['demo']), 'logits differ from x86'\n"
            "print('PATH', dot_isa(), m.info()['dot_isa'])\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env}, timeout=3600)


@pytest.mark.parametrize("forced", ISAS)
def test_forcing_a_path(forced):
    """SEPRT_DOT_ISA=forced: taken when the CPU runs it, else 'generic' with a
    warning; the logits are bit-identical either way, and nothing crashes."""
    r = run_demo({"SEPRT_DOT_ISA": forced})
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    want = forced if forced in runnable_here() else "generic"
    assert f"PATH {want} {want}" in r.stdout
    assert ("lacks it" in r.stderr) == (want != forced)


def test_unknown_path_is_refused():
    r = subprocess.run([sys.executable, "-c", "from seprt.kernels.intrinsics import dot_isa; dot_isa()"],
                       capture_output=True, text=True, env={**os.environ, "SEPRT_DOT_ISA": "avx9"}, cwd=ROOT)
    assert r.returncode != 0 and "SEPRT_DOT_ISA='avx9'" in r.stderr


@pytest.mark.skipif(not (AARCH64 and "dotprod" not in (hwcaps() or ())),
                    reason="needs an aarch64 CPU without dotprod (make test-aarch64 emulates a Cortex-A72)")
def test_cpu_name_that_implies_dotprod_on_a_cpu_without_it():
    """NUMBA_CPU_NAME=cortex-a76 on a Cortex-A72 (a Pi 4 with a Pi 5's setting):
    LLVM would emit udot and LSE atomics for it (SIGILL); the runtime switches
    them off in numba's target and runs the generic path, bit-identical."""
    r = run_demo({"NUMBA_CPU_NAME": "cortex-a76"})
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert "PATH generic generic" in r.stdout


def test_bench_names_the_path_that_ran(capsys):
    from seprt.cli import main
    import json
    import seprt
    assert main(["bench", seprt.demo_model_path(), "--runs", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert f"dot-u8i8-{dot_isa()}" in r["path"].split(": ", 1)[1].split(", ")      # after "aot: " or "jit: "
    assert main(["info", seprt.demo_model_path()]) == 0
    assert f"dot tiles on this CPU: {dot_isa()}" in capsys.readouterr().out


def test_udot_math_in_numpy():
    """The identity the udot tile relies on, exhaustively over one lane's range:
    sum a*(w XOR 0x80 as u8) - 128 * sum a == sum a*w."""
    a = np.arange(256, dtype=np.int64)[:, None]
    w = np.arange(-128, 128, dtype=np.int64)[None, :]
    w_u8 = (w.astype(np.int8).view(np.uint8) ^ 0x80).astype(np.int64)
    assert np.array_equal(a * w_u8 - 128 * a, a * w)
