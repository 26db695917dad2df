"""Export a bertforge run (every family) to the formats users load it in: a transformers folder (bertforge's own
modeling code where transformers has no class), a sentence-transformers model and a PyLate ColBERT model.

    python -m bertforge.export hf RUN --out DIR
    python -m bertforge.export sentence-transformers RUN --pooling mean|cls [--normalize] [--max-seq-length N] --out DIR
    python -m bertforge.export pylate RUN --out DIR [--dim 128]

sentence-transformers and PyLate are optional: ``pip install -e .[retrieval]``.
"""
