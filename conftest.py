import os
import sys

# tests import their helpers as a plain module
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "tests"))
collect_ignore = ["seprt/__main__.py", "scripts", "training", "converters", "android_demo", "build", ".venv", ".cache"]


def _shapes_per_test() -> int | None:
    """SEPRT_TEST_SHAPES: unset/"all" -> every parametrization; "few" -> 3; N -> N."""
    v = os.environ.get("SEPRT_TEST_SHAPES", "all").strip().lower()
    if v in ("", "all"):
        return None
    if v == "few":
        return 3
    if v.isdigit() and int(v) > 0:
        return int(v)
    raise ValueError(f"SEPRT_TEST_SHAPES={v!r}: expected 'all', 'few' or a positive number")


def pytest_collection_modifyitems(config, items):
    """Under emulation (tools/aarch64/run.sh sets SEPRT_TEST_SHAPES=few) keep
    only N parametrizations of each test function, spread evenly over its list
    (first, middle, last for N=3): every test function and every kernel still
    runs, on fewer shapes. Dropped cases are reported as deselected."""
    n = _shapes_per_test()
    if n is None:
        return
    groups: dict[tuple, list] = {}
    for it in items:
        groups.setdefault((it.nodeid.split("::")[0], getattr(it, "originalname", it.name)), []).append(it)
    keep = set()
    for group in groups.values():
        if len(group) <= n:
            keep.update(map(id, group))
        else:
            keep.update(id(group[round(i * (len(group) - 1) / (n - 1))]) for i in range(n)) if n > 1 \
                else keep.add(id(group[0]))
    dropped = [it for it in items if id(it) not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [it for it in items if id(it) in keep]
