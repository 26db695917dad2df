"""GLUE finetuning sweeps: 8 tasks x seeds, the MNLI chain, a worker pool, one results table.

Uses only the registry (``registry.classifiers``), never a model family's code, so every family
with a registered classifier can be finetuned.
"""

from bertforge.glue.config import GlueConfig, load_glue_config
from bertforge.glue.sweep import main, run_sweep

__all__ = ["GlueConfig", "load_glue_config", "main", "run_sweep"]
