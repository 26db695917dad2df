"""Packaging: pyproject declares what the code imports, requirements.txt pins satisfy it, LICENSE and
the README's layout match the tree."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "bertforge"
OPTIONAL_IMPORTS = {"flash_attn", "lm_eval"}  # extras (gpu, eval), imported behind an availability check


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = str(req.specifier).removeprefix("==")
    return pins


def _third_party_imports() -> set[str]:
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "bertforge"} - OPTIONAL_IMPORTS


def test_every_runtime_dependency_is_pinned_inside_its_range():
    pins = _pins()
    for spec in _project()["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a dependency in pyproject.toml but not pinned in requirements.txt"
        assert req.specifier.contains(pins[name]), f"requirements.txt pins {name}=={pins[name]} outside {spec}"


def test_every_imported_package_is_declared():
    extras = [spec for specs in _project()["optional-dependencies"].values() for spec in specs]
    declared = {canonicalize_name(Requirement(s).name) for s in [*_project()["dependencies"], *extras]}
    declared.add("triton")  # comes with torch (its CUDA wheels); the fused kernels check for it at run time
    owners = packages_distributions()
    for module in sorted(_third_party_imports()):
        dists = {canonicalize_name(d) for d in owners.get(module, [])}
        assert dists & declared, (f"src/bertforge imports '{module}' ({dists}) but pyproject.toml declares it neither "
                                  "as a dependency nor in an extra")


def test_license_file_matches_the_declared_license():
    declared = _project()["license"]["text"]
    assert declared == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text.splitlines()[0] and "Version 2.0" in text


def test_readme_layout_names_every_subpackage_and_only_existing_paths():
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("```")[1]
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    for name in subpackages:
        assert re.search(rf"^\s+{name}/", layout, re.M), f"README layout lacks src/bertforge/{name}/"
    for entry in re.findall(r"^([\w.]+(?:/|\.py))", layout, re.M):
        assert (ROOT / entry).exists(), f"README layout names {entry}, which does not exist"
    for entry in re.findall(r"^\s+([\w]+/|[\w]+\.py)", layout, re.M):
        assert (PACKAGE / entry).exists() or (ROOT / entry).exists(), f"README layout names {entry}, not in the tree"
