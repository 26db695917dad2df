# bertforge on NVIDIA's NGC PyTorch container: flash-attn and our FFT-convolution kernel (csrc/) compiled for A100
# (sm_80) and H100/H200 (sm_90), the fused Triton kernels, and a check of the backends at the end of the build.
#   docker build -t bertforge .
#   docker run --rm --gpus all --ipc=host bertforge python -m bertforge.backends --require gpu,flash-attn,fftconv,fused
#
# NGC_TAG 25.04 is the newest NGC PyTorch release whose torch our pins accept. Composer 0.32.1 needs torch>=2.6,<2.7.1
# and bertforge targets 2.7. NVIDIA's framework support matrix lists 2.7 pre-release builds in 25.02 (2.7.0a0+6c54963f75),
# 25.03 (2.7.0a0+7c8ec84dab) and 25.04 (2.7.0a0+79aa17489c, CUDA 12.9, Python 3.12); 25.01 ships 2.6.0a0 and
# 25.05 onwards 2.8.0a0 or newer. Any other tag stops the build at the first RUN with one line saying so.
ARG NGC_TAG=25.04
FROM nvcr.io/nvidia/pytorch:${NGC_TAG}-py3
ARG NGC_TAG
# compute capabilities to compile for: 8.0 (A100), 9.0 (H100/H200)
ARG CUDA_ARCHS="8.0 9.0"
# parallel compile jobs for flash-attn (each nvcc takes several GB of memory)
ARG MAX_JOBS=4
# the non-root user's uid: --build-arg USER_UID="$(id -u)" makes what it writes to mounted folders yours
ARG USER_UID=1000

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

# Keep the container's torch, by a constraints file rather than --no-deps everywhere (the resolver still installs and
# checks every other dependency). NGC's own /etc/pip/constraint.txt pins all of the image's packages, numpy 1.26 among
# them, which our pins (numpy 2.1.3, ...) contradict, so PIP_CONSTRAINT points pip at a file written here instead: it
# pins only the torch stack to the container's builds, and a package that wants another torch fails the build
# loudly instead of replacing it. The same RUN creates the non-root user (removing the base image's user of that uid).
RUN python -c "import sys, torch; v = torch.__version__; sys.exit(0 if v.startswith('2.7.') else f'bertforge: NGC_TAG=${NGC_TAG} ships torch {v} but bertforge pins torch 2.7 (Composer 0.32.1): use NGC_TAG=25.04, 25.03 or 25.02')" \
    && pip list --format=freeze | grep -iE '^(torch|torchvision|torchaudio|triton|pytorch-triton)==' \
        > /opt/bertforge-constraints.txt \
    && existing="$(getent passwd "${USER_UID}" | cut -d: -f1)" \
    && if [ -n "${existing}" ]; then userdel --remove "${existing}" 2>/dev/null || userdel "${existing}"; fi \
    && useradd --create-home --shell /bin/bash --uid "${USER_UID}" bertforge
ENV PIP_CONSTRAINT=/opt/bertforge-constraints.txt

WORKDIR /workspace/bertforge
COPY pyproject.toml ./
# The gpu extra, read from pyproject.toml: liger-kernel, and flash-attn compiled here against the container's torch
# for CUDA_ARCHS (FLASH_ATTENTION_FORCE_BUILD: its prebuilt wheels target PyPI's torch builds); it replaces the
# container's flash-attn. First, so that editing requirements.txt does not redo this long compile.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['gpu']))" \
        > /tmp/requirements-gpu.txt \
    && FLASH_ATTENTION_FORCE_BUILD=TRUE FLASH_ATTN_CUDA_ARCHS="$(echo "${CUDA_ARCHS}" | tr -d . | tr ' ' ';')" \
        TORCH_CUDA_ARCH_LIST="${CUDA_ARCHS}" \
        MAX_JOBS="${MAX_JOBS}" pip install --no-build-isolation -r /tmp/requirements-gpu.txt

COPY requirements.txt ./
# requirements.txt's pinned set minus torch, through the resolver. fast-plaid pins torch==2.7.0 exactly (PyPI's build;
# NGC's 2.7.0a0 is a pre-release of it) and pylate pins fast-plaid, so those two go in with --no-deps, followed by
# their other requirements as their metadata lists them (torch and each other left out).
RUN grep -vE '^(torch|fast-plaid|pylate)==' requirements.txt > /tmp/requirements-ngc.txt \
    && pip install -r /tmp/requirements-ngc.txt \
    && grep -E '^(fast-plaid|pylate)==' requirements.txt > /tmp/requirements-nodeps.txt \
    && pip install --no-deps -r /tmp/requirements-nodeps.txt \
    && python -c "import importlib.metadata as m, re; print('\n'.join(r for d in ('fast-plaid', 'pylate') for r in m.requires(d) or [] if 'extra ==' not in r and re.match(r'[\w.-]+', r)[0].lower().replace('_', '-') not in ('torch', 'fast-plaid', 'pylate')))" \
        > /tmp/requirements-nodeps-deps.txt \
    && pip install -r /tmp/requirements-nodeps-deps.txt

COPY --chown=bertforge:bertforge . .
# The project, editable so that the sources and yamls/ stay here, with csrc/ compiled for CUDA_ARCHS
# (BERTFORGE_BUILD_CUDA=1 in setup.py, as `make kernel`). --no-deps: its dependencies are in, and pyproject.toml's
# torch>=2.7 does not admit NGC's 2.7.0a0 pre-release.
RUN TORCH_CUDA_ARCH_LIST="${CUDA_ARCHS}" BERTFORGE_BUILD_CUDA=1 pip install --no-deps --no-build-isolation -e . \
    && chown -R bertforge:bertforge /workspace/bertforge

USER ${USER_UID}
# Smoke check: the package imports and every backend is installed or built. A build sees no GPU, so `gpu` is not
# required here and the others show `ready`; `docker run --gpus all` shows them `active`.
RUN python -m bertforge.backends --require torch,flash-attn,fftconv,fused
CMD ["python", "-m", "bertforge.backends"]
