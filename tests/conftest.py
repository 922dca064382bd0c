import importlib.util
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
REAL_MINI = ROOT.parent / "shared" / "data" / "real-mini"

# at most 2 threads; OMP_NUM_THREADS, when set, wins (tests next to a long experiment run
# at 1 thread so that neither slows the other 5-10x)
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, min(2, os.cpu_count() or 1))))


def make_tgz(path, members: dict) -> str:
    """A gzipped tar at ``path`` holding ``members`` ({name: bytes}), as `npm pack` writes
    one; its sha256 (what odkd's store pins)."""
    import hashlib
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    Path(path).write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


@pytest.fixture
def load_tool():
    """Import tools/NAME.py (the tools are scripts, not a package) and return the module."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return load


@pytest.fixture
def real_mini() -> Path:
    """Path to ../shared/data/real-mini; the test is skipped when it is absent."""
    if not (REAL_MINI / "coco" / "test_coco.json").exists():
        pytest.skip("../shared/data/real-mini not present")
    return REAL_MINI


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """List the checks that did not run, grouped by reason: a clone without ../shared skips
    the real-image tests, and that should be visible, not only a count."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    by_reason: dict[str, list[str]] = {}
    for rep in skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        reason = reason.removeprefix("Skipped: ")
        by_reason.setdefault(reason, []).append(rep.nodeid)
    tr = terminalreporter
    tr.section(f"{len(skipped)} check(s) did not run", sep="-")
    for reason, ids in sorted(by_reason.items()):
        tr.write_line(f"{reason} ({len(ids)}):")
        for nodeid in ids:
            tr.write_line(f"    {nodeid}")
