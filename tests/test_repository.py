"""House rules that keep the codebase easy to change, checked on every test run."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENDOR_SDKS = {"alpaca", "polygon", "twilio", "telegram"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _domain_modules() -> list[Path]:
    return sorted((ROOT / "thetadesk").rglob("*.py"))


def test_domain_package_never_imports_ray():
    offenders = [str(p.relative_to(ROOT)) for p in _domain_modules() if "ray" in _imports(p)]
    assert offenders == [], "thetadesk/ must stay importable and testable without Ray"


def test_vendor_sdks_are_imported_only_in_adapters():
    adapters = ROOT / "thetadesk" / "adapters"
    offenders = [
        str(p.relative_to(ROOT))
        for p in _domain_modules()
        if adapters not in p.parents and _imports(p) & VENDOR_SDKS
    ]
    assert offenders == []


def test_ruff_reports_no_lint_errors():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: install the dev extra (scripts/test does)")
    result = subprocess.run(
        [ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
