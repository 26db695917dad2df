"""Write a finetuned GLUE classifier (a job's ``model.pt``) as a transformers folder that
``AutoModelForSequenceClassification`` loads: the ``hf_bert`` family as its own transformers class, a FlexBERT in BERT
form with ``cls`` pooling as ``BertForSequenceClassification``, other FlexBERT and M2-BERT with bertforge's modeling
code (``BertforgeForSequenceClassification``, ``trust_remote_code=True``), with the tokenizer and the task's labels.

A GLUE job folder (``{output_dir}/jobs/<task>-seed<seed>-<key>/``) holds ``model.pt`` and ``result.json`` (task,
seed); the sweep's config (model block, tokenizer, per-task pooling) is in ``{output_dir}/results.json``, or, for a
sweep that has not finished, in its YAML (``--glue-config``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any

import torch

from bertforge.errors import UserError
from bertforge.glue.config import GlueConfig
from bertforge.glue.tasks import TASKS

WEIGHTS = "model.pt"
JOB_RECORD = "result.json"  # bertforge.glue.pool.RESULT_FILE
SWEEP_RESULTS = "results.json"
JOB_CONFIG = "glue_config.json"  # bertforge.glue.finetune.JOB_CONFIG
REGRESSION_LABEL = "score"


@dataclasses.dataclass
class ClassifierSource:
    """What an export needs from a GLUE job: its weights file, task and the sweep's (resolved) config."""

    weights: str
    task: str
    config: GlueConfig


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot be read as JSON ({type(err).__name__})") from None


def _weights_file(source: str) -> str:
    """``source``'s ``model.pt``: the file itself, or the one in a job folder."""
    if os.path.isdir(source):
        weights = os.path.join(source, WEIGHTS)
        if not os.path.isfile(weights):
            raise UserError(f"{source}: no {WEIGHTS}; give a GLUE job folder of a sweep run with save_checkpoints: "
                            "true, or its model.pt")
        return weights
    if not os.path.isfile(source):
        raise UserError(f"{source}: no such file or folder; give a GLUE job folder or its {WEIGHTS}")
    return source


def _sweep_config(job_dir: str, glue_config: str | None) -> GlueConfig:
    """The sweep's config: from ``glue_config`` (a GLUE YAML, resolved as the sweep resolves it), else the job's own
    ``glue_config.json``, else the ``results.json`` two folders above the job folder (jobs saved before the former)."""
    from bertforge.config.validate import from_dict
    from bertforge.glue.config import load_glue_config
    from bertforge.glue.sweep import resolve

    if glue_config is not None:
        return resolve(dataclasses.replace(load_glue_config(glue_config), data_dir=None))
    own = os.path.join(job_dir, JOB_CONFIG)
    if os.path.isfile(own):
        return from_dict(GlueConfig, _read_json(own), own)
    results = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(job_dir))), SWEEP_RESULTS)
    if not os.path.isfile(results):
        raise UserError(f"{results} not found and {own} is missing; pass the sweep's YAML with --glue-config")
    record = _read_json(results)
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise UserError(f"{results}: has no 'config'; is it a GLUE sweep's results.json?")
    return from_dict(GlueConfig, record["config"], SWEEP_RESULTS)


def find_source(source: str, glue_config: str | None = None, task: str | None = None) -> ClassifierSource:
    """The weights, task (``task``, else the job's ``result.json``) and sweep config of a GLUE job folder or its
    ``model.pt``; every problem is one :class:`UserError` line."""
    weights = _weights_file(source)
    job_dir = os.path.dirname(os.path.abspath(weights))
    if task is None:
        record = os.path.join(job_dir, JOB_RECORD)
        task = _read_json(record).get("task") if os.path.isfile(record) else None
        if task is None:
            raise UserError(f"{job_dir}: no {JOB_RECORD} naming the task; pass --task (one of {', '.join(TASKS)})")
    if task not in TASKS:
        raise UserError(f"--task: unknown GLUE task '{task}'; choose from {', '.join(TASKS)}")
    return ClassifierSource(weights, task, _sweep_config(job_dir, glue_config))


def read_classifier_state(path: str) -> dict[str, torch.Tensor]:
    """The ``state['model']`` tensors of a GLUE job's ``model.pt`` (one UserError line when it is not one)."""
    from bertforge.checkpoints import read_model_weights

    model = read_model_weights(path, weights_only=True)
    if not any(k.startswith("model.classifier.") for k in model):
        raise UserError(f"{path}: not a GLUE classifier checkpoint (no state['model'] with model.classifier.* "
                        "weights); give the model.pt of a GLUE job")
    return model


def load_classifier(src: ClassifierSource) -> Any:
    """The sweep's classifier for ``src.task`` (registry ``classifiers``, the task's pooling), with the job's
    weights loaded strictly, in eval mode."""
    from bertforge import registry
    from bertforge.data.tokenizer import CLASSIFIER_REQUIRED, load_tokenizer

    cfg, state = src.config, read_classifier_state(src.weights)
    if not cfg.model or not cfg.tokenizer:
        raise UserError("model: the sweep config names no model block or tokenizer; pass the sweep's YAML with "
                        "--glue-config")
    registry.import_code_paths(cfg.code_paths)
    tokenizer = load_tokenizer(cfg.tokenizer, key="tokenizer", required=CLASSIFIER_REQUIRED)
    block = {**cfg.model, "pooling": cfg.settings(src.task).pooling}
    model = registry.classifiers.build(block, "model", tokenizer, TASKS[src.task].num_labels)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = str(err).splitlines()
        first = (lines[1] if len(lines) > 1 else lines[0]).strip()[:200]  # e.g. "Missing key(s) in state_dict: ..."
        raise UserError(f"{src.weights}: does not fit the sweep's model block for {src.task} ({first})") from None
    return model.eval()


def label_fields(task: str) -> dict[str, Any]:
    """``num_labels``, ``id2label``, ``label2id`` and ``problem_type`` of GLUE ``task`` for a transformers config."""
    labels = TASKS[task].labels
    names = list(labels) if labels else [REGRESSION_LABEL]
    return {"num_labels": len(names), "id2label": dict(enumerate(names)),
            "label2id": {name: i for i, name in enumerate(names)},
            "problem_type": "single_label_classification" if labels else "regression"}


def bert_form(module: Any, tokenizer: Any, fields: dict[str, Any]) -> Any:
    """``module`` (a :class:`~bertforge.models.classifier.SequenceClassifier`) as transformers'
    ``BertForSequenceClassification`` (pooler = our dense + tanh on the first token, then dropout and classifier),
    or None when its encoder is not a FlexBERT in BERT form or its pooling is not ``cls``."""
    from transformers import BertForSequenceClassification

    from bertforge.models.convert.bert import bert_incompatibilities, to_bert
    from bertforge.models.flexbert.model import FlexBertForMaskedLM, FlexBertModel

    encoder = module.model
    if module.pooling != "cls" or not isinstance(encoder, FlexBertModel) or bert_incompatibilities(encoder.config):
        return None
    mlm = FlexBertForMaskedLM(encoder.config)
    mlm.model = encoder  # the encoder's BERT tensors come from the MLM export; its (new) MLM head is dropped
    bert_mlm = to_bert(mlm, tokenizer)
    state = {k: v for k, v in bert_mlm.state_dict().items() if k.startswith("bert.")}
    dense, dropout = module.head[0], next(m.p for m in module.head if isinstance(m, torch.nn.Dropout))
    state.update({"bert.pooler.dense.weight": dense.weight, "bert.pooler.dense.bias": dense.bias,
                  "classifier.weight": module.classifier.weight, "classifier.bias": module.classifier.bias})
    config = copy.deepcopy(bert_mlm.config)
    config.update({**fields, "classifier_dropout": dropout, "architectures": [BertForSequenceClassification.__name__]})
    hf_model = BertForSequenceClassification(config)
    hf_model.load_state_dict(state, strict=True)
    return hf_model.to(next(module.parameters()).dtype).eval()


def to_transformers(composer_model: Any, task: str) -> Any:
    """``composer_model`` (a registry classifier) as a transformers sequence classifier with ``task``'s labels: the
    hf_bert family's own model; FlexBERT in BERT form with cls pooling as ``BertForSequenceClassification``; other
    FlexBERT and M2-BERT as ``BertforgeForSequenceClassification``; UserError for anything else."""
    from bertforge.export.remote_code import encoder_family, to_remote_classifier
    from bertforge.models.classifier import SequenceClassifier

    module, fields = composer_model.model, label_fields(task)
    if hasattr(module, "save_pretrained"):
        for key, value in fields.items():
            setattr(module.config, key, value)
        return module.eval()
    if isinstance(module, SequenceClassifier) and encoder_family(module.model) is not None:
        bert = bert_form(module, composer_model.tokenizer, fields)
        return bert if bert is not None else to_remote_classifier(module, composer_model.tokenizer, **fields)
    raise UserError(f"model.name: {type(module).__name__} has no transformers form; classifier export supports "
                    "hf_bert, flexbert and m2_bert")


def export_classifier(source: str, out: str, glue_config: str | None = None, task: str | None = None) -> str:
    """Write the GLUE job ``source`` (folder or ``model.pt``) as a transformers folder ``out``; return ``out``."""
    from bertforge.models.export import save_hf_folder

    src = find_source(source, glue_config, task)
    composer_model = load_classifier(src)
    return save_hf_folder(to_transformers(composer_model, src.task), composer_model.tokenizer, out)
