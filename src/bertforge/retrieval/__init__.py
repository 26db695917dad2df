"""Retrieval: contrastive finetuning (sentence-transformers, PyLate) and BEIR evaluation beside BM25.

The libraries are optional (``pip install -e .[retrieval]``) and imported only when used.
"""

from bertforge.retrieval.config import RetrievalConfig, load_retrieval_config
from bertforge.retrieval.metrics import evaluate
from bertforge.retrieval.run import main, run

__all__ = ["RetrievalConfig", "evaluate", "load_retrieval_config", "main", "run"]
