"""``python -m bertforge.export classifier``: a finetuned GLUE job's classifier reloads with transformers'
AutoModelForSequenceClassification and gives our logits (fp32, atol 1e-5) on a padded batch of sentence pairs of
mixed lengths, with the task's labels; a file that is not a classifier checkpoint fails in one line."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertTokenizerFast

from bertforge import registry
from bertforge.export.__main__ import main
from bertforge.glue.config import GlueConfig
from bertforge.glue.report import write_results
from bertforge.glue.tasks import TASKS
from tests.conftest import REPO
from tests.export.runs import RUNS, TEXTS, WORDS, from_pretrained
from tests.export.test_cli import _fails
from tests.models.test_nsp_head import SPECIALS

SEED = 17
# (family in RUNS or flexbert_bert, GLUE task, pooling): 2 and 3 labels, regression (STS-B), both poolings
CASES = [("hf_bert", "rte", "cls"), ("flexbert", "mnli", "mean"), ("flexbert_alibi", "stsb", "cls"),
         ("m2_bert", "cola", "mean"), ("flexbert_bert", "qnli", "cls")]
# the class each case reloads as: transformers' own, or bertforge's code from the folder (trust_remote_code)
EXPECTED = {"hf_bert": "BertForSequenceClassification", "flexbert_bert": "BertForSequenceClassification"}


def _model_block(root: Path, kind: str, tokenizer_dir: Path) -> dict:
    """The model block of the tiny quickstart YAML of ``kind``, as a GLUE sweep takes it from a pretraining run."""
    from bertforge.config import load_config

    if kind == "flexbert_bert":  # a FlexBERT in BERT form: BertForSequenceClassification expresses it exactly
        from transformers import BertConfig

        from bertforge.models.convert.bert import flexbert_config_from_bert

        bert = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=40, max_position_embeddings=64)
        return {"name": "flexbert", "model_config": asdict(flexbert_config_from_bert(bert, type_vocab_size=2))}
    yaml, model_config = RUNS[kind]
    overrides = [f"run_dir={root / 'pretrain'}", f"tokenizer.name={tokenizer_dir}", "max_seq_len=64"]
    overrides += [f"model.model_config.{k}={v}" for k, v in model_config.items()]
    return asdict(load_config(REPO / "yamls" / "quickstart" / yaml, overrides))["model"]


def make_job(root: Path, kind: str, task: str, pooling: str):
    """A finished GLUE sweep under ``root`` with one saved job, as glue.py leaves it (``results.json``,
    ``jobs/<job>/model.pt`` and ``result.json``); returns (job folder, the classifier it holds)."""
    tokenizer_dir = root / "tokenizer"
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + [f"w{i}" for i in range(WORDS)]) + "\n")
    tokenizer = BertTokenizerFast(str(vocab))  # positional: vocab_file in transformers 4, vocab in 5
    tokenizer.save_pretrained(tokenizer_dir)
    cfg = GlueConfig(data_dir=None, model=_model_block(root, kind, tokenizer_dir), tokenizer=str(tokenizer_dir),
                     output_dir=str(root), tasks=[task], seeds=[SEED], save_checkpoints=True,
                     task_settings={task: {"pooling": pooling}})
    torch.manual_seed(0)
    model = registry.classifiers.build({**cfg.model, "pooling": pooling}, "model", tokenizer, TASKS[task].num_labels)
    with torch.no_grad():  # move every weight off its init (zero biases, unit norms) so a dropped tensor would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    job_dir = root / "jobs" / f"{task}-seed{SEED}-0123456789ab"
    job_dir.mkdir(parents=True)
    torch.save({"state": {"model": model.state_dict()}}, job_dir / "model.pt")
    metrics = {f"{e.entry}/{m}": 50.0 for e in TASKS[task].evals for m in TASKS[task].metrics}
    record = {"task": task, "seed": SEED, "key": "0123456789ab", "status": "ok", "metrics": metrics, "error": None,
              "seconds": 1.0}
    (job_dir / "result.json").write_text(json.dumps(record))
    write_results(str(root), asdict(cfg), [task], [SEED], [record])
    return job_dir, model.eval()


def _logits(model, batch: dict) -> torch.Tensor:
    """Our classifier's logits ``(B, num_labels)``."""
    with torch.no_grad():
        if hasattr(model.model, "save_pretrained"):  # the transformers family
            return model.model(**batch).logits
        return model.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


@pytest.mark.parametrize(("kind", "task", "pooling"), CASES)
def test_reloaded_classifier_gives_our_logits_and_labels(kind, task, pooling, tmp_path, capsys):
    job_dir, model = make_job(tmp_path, kind, task, pooling)
    out = tmp_path / "exported"
    main(["classifier", str(job_dir), "--out", str(out)])
    assert capsys.readouterr().out.strip() == str(out)
    hf = from_pretrained(AutoModelForSequenceClassification, out, trust_remote_code=True).eval()
    remote = kind not in EXPECTED
    assert type(hf).__name__ == EXPECTED.get(kind, "BertforgeForSequenceClassification")
    assert ("transformers_modules" in type(hf).__module__) == remote  # the folder's own code, not bertforge's import
    tokenizer = BertTokenizerFast.from_pretrained(out)
    batch = dict(tokenizer(TEXTS, TEXTS[::-1], padding=True, return_tensors="pt"))  # pairs of 5..18 tokens
    assert (batch["attention_mask"] == 0).any()
    with torch.no_grad():
        logits = hf(**batch).logits  # (B, num_labels)
    expected = _logits(model, batch)
    assert logits.shape == (len(TEXTS), TASKS[task].num_labels)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    labels = TASKS[task].labels
    assert hf.config.id2label == dict(enumerate(labels or ["score"]))
    assert hf.config.label2id == {name: i for i, name in enumerate(labels or ["score"])}
    assert hf.config.problem_type == ("single_label_classification" if labels else "regression")
    if remote:
        config = json.loads((out / "config.json").read_text())
        assert config["auto_map"]["AutoModelForSequenceClassification"].endswith("BertforgeForSequenceClassification")
        assert config["pooling"] == pooling


def test_regression_loss_is_mse(tmp_path):
    """The exported regressor's loss with labels is the mean squared error of its single logit."""
    job_dir, model = make_job(tmp_path, "m2_bert", "stsb", "cls")
    main(["classifier", str(job_dir / "model.pt"), "--out", str(tmp_path / "out")])
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    batch = dict(BertTokenizerFast.from_pretrained(tmp_path / "out")(TEXTS, padding=True, return_tensors="pt"))
    target = torch.tensor([0.5, 1.0, 4.5, 3.0])
    with torch.no_grad():
        out = hf(**batch, labels=target)
    assert out.logits.shape == (len(TEXTS), 1)
    torch.testing.assert_close(out.loss, ((_logits(model, batch)[:, 0] - target) ** 2).mean(), rtol=0, atol=1e-5)


def test_a_file_that_is_not_a_classifier_checkpoint_fails_in_one_line(tmp_path, capsys):
    job_dir, _ = make_job(tmp_path, "m2_bert", "rte", "cls")
    err = _fails(["classifier", str(job_dir), "--task", "mnli", "--out", str(tmp_path / "out")], capsys)
    assert "does not fit the sweep's model block for mnli (size mismatch for model.classifier.weight" in err
    (job_dir / "model.pt").write_text("not a checkpoint")
    err = _fails(["classifier", str(job_dir), "--out", str(tmp_path / "out")], capsys)
    assert "model.pt: cannot be read as a checkpoint" in err
    torch.save({"state": {"model": {"model.encoder.weight": torch.zeros(2)}}}, job_dir / "model.pt")  # an MLM's
    err = _fails(["classifier", str(job_dir), "--out", str(tmp_path / "out")], capsys)
    assert "no state['model'] with model.classifier.* weights" in err
    assert not (tmp_path / "out").exists()


def test_bare_model_pt_with_glue_config_and_task(tmp_path, capsys):
    """Without the sweep's results.json (an unfinished sweep) the error names --glue-config; with the YAML and
    --task, a model.pt copied out of its job folder exports the same classifier."""
    from omegaconf import OmegaConf

    job_dir, model = make_job(tmp_path, "flexbert", "mrpc", "mean")
    weights = tmp_path / "elsewhere" / "model.pt"
    weights.parent.mkdir()
    weights.write_bytes((job_dir / "model.pt").read_bytes())
    config = json.loads((tmp_path / "results.json").read_text())["config"]
    (tmp_path / "results.json").unlink()
    out = tmp_path / "out"
    assert "pass --task" in _fails(["classifier", str(weights), "--out", str(out)], capsys)
    assert "--glue-config" in _fails(["classifier", str(job_dir), "--out", str(out)], capsys)
    OmegaConf.save(OmegaConf.create(config), tmp_path / "glue.yaml")
    main(["classifier", str(weights), "--out", str(out), "--glue-config", str(tmp_path / "glue.yaml"),
          "--task", "mrpc"])
    hf = AutoModelForSequenceClassification.from_pretrained(out).eval()
    batch = dict(BertTokenizerFast.from_pretrained(out)(TEXTS, padding=True, return_tensors="pt"))
    with torch.no_grad():
        torch.testing.assert_close(hf(**batch).logits, _logits(model, batch), rtol=0, atol=1e-5)
    assert hf.config.pooling == "mean" and hf.config.id2label == {0: "0", 1: "1"}
