"""The Python examples of the README and of every docs page run, top to bottom, as a reader would.

Each page's ```python blocks are joined in order (a page's later examples may use the names an
earlier one defined) and run in a fresh interpreter, in an empty working directory. Blocks marked
``doctest: +SKIP`` are illustrations, not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _blocks(page: Path) -> list:
    return [b for b in BLOCK.findall(page.read_text(encoding="utf-8")) if "doctest: +SKIP" not in b]


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: p.name)
def test_page_examples_run(page, tmp_path):
    script = tmp_path / "example.py"
    script.write_text("\n".join(_blocks(page)), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), MPLBACKEND="Agg")
    run_dir = tmp_path / "cwd"
    run_dir.mkdir()
    proc = subprocess.run([sys.executable, str(script)], cwd=run_dir, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{page.name}: {proc.stderr[-2000:]}"
