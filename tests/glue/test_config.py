"""The GLUE YAML: shipped files validate, bad keys fail by name with a did-you-mean, settings merge in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertforge import registry
from bertforge.config.validate import from_dict
from bertforge.errors import ConfigError, UserError
from bertforge.glue.config import GlueConfig, load_glue_config
from bertforge.glue.sweep import resolve
from tests.conftest import REPO
from tests.glue.conftest import GLUE_DIR, tiny_sweep

YAMLS = sorted((REPO / "yamls" / "finetune-glue").glob("*.yaml"))


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_shipped_yamls_validate(path):
    cfg = load_glue_config(path, [f"data_dir={GLUE_DIR}"])
    if cfg.model is not None:
        registry.classifiers.validate(cfg.model, "model")
    for task in cfg.tasks:
        assert cfg.settings(task).epochs >= 1


def test_base_yaml_runs_all_tasks_with_five_seeds_for_small_ones():
    cfg = load_glue_config(REPO / "yamls/finetune-glue/hf-bert-base.yaml", ["data_dir=null"])
    assert sorted(cfg.tasks) == sorted(["mnli", "qnli", "qqp", "sst2", "cola", "stsb", "mrpc", "rte"])
    assert cfg.task_seeds("mnli") == [17] and len(cfg.task_seeds("rte")) == 5
    assert {t for t in cfg.tasks if cfg.settings(t).from_mnli} == {"rte", "mrpc", "stsb"}


def test_overrides_pick_tasks_and_seeds():
    cfg = load_glue_config(REPO / "yamls/finetune-glue/hf-bert-base.yaml",
                           ["data_dir=null", "tasks=[rte,mrpc]", "seeds=[17,42]"])
    assert cfg.tasks == ["rte", "mrpc"] and cfg.task_seeds("rte") == [17, 42]


@pytest.mark.parametrize("change,message", [
    ({"taks": ["rte"]}, r"taks: unknown key \(did you mean 'tasks'\?\)"),
    ({"tasks": ["rtee"]}, r"tasks\[0\]: unknown task 'rtee' \(did you mean 'rte'\?\)"),
    ({"task_settings": {"rte": {"lrr": 1.0}}}, r"task_settings\.rte\.lrr: unknown key \(did you mean 'lr'\?\)"),
    ({"task_settings": {"mrcp": {}}}, r"task_settings\.mrcp: unknown task \(did you mean 'mrpc'\?\)"),
    ({"defaults": {"warmup": "6%"}}, r"defaults\.warmup: '6%' is not a time"),
    ({"seeds": []}, r"seeds: needs at least one seed"),
    ({"defaults": {"grad_clip_norm": -1.0}}, r"defaults\.grad_clip_norm: -1.0 must be >= 0"),
    ({"data_dir": "???"}, r"data_dir: required"),
])
def test_config_errors_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(GlueConfig, tiny_sweep(tmp_path, **change))


def test_gradient_clipping_defaults_to_bert_and_can_be_turned_off(tmp_path):
    cfg = from_dict(GlueConfig, tiny_sweep(tmp_path, task_settings={"rte": {"grad_clip_norm": 0.0}}))
    assert cfg.settings("mrpc").grad_clip_norm == 1.0 and cfg.settings("rte").grad_clip_norm == 0.0


def test_settings_merge_order(tmp_path):
    cfg = from_dict(GlueConfig, tiny_sweep(tmp_path, seeds=[1, 2, 3],
                                           task_settings={"rte": {"lr": 2.0e-5, "from_mnli": False}}))
    rte, mrpc = cfg.settings("rte"), cfg.settings("mrpc")
    assert rte.lr == 2.0e-5 and mrpc.lr == 1.0e-3  # task_settings over defaults
    assert rte.from_mnli is False and mrpc.from_mnli is True  # built-in chain, overridable
    assert rte.epochs == 1 and rte.warmup == "0.06dur"  # YAML defaults, then built-in base
    assert cfg.task_seeds("mnli") == [1] and cfg.task_seeds("rte") == [1, 2, 3]


def test_missing_task_folder_fails_before_any_job(tmp_path):
    (tmp_path / "glue" / "RTE").mkdir(parents=True)
    cfg = from_dict(GlueConfig, tiny_sweep(tmp_path / "out", data_dir=str(tmp_path / "glue")))
    with pytest.raises(UserError, match=r"glue/MNLI: task folder not found"):
        resolve(cfg)


def test_model_and_tokenizer_come_from_the_pretraining_run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest-rank0.pt").write_bytes(b"x")
    (run / "config.yaml").write_text("model:\n  name: hf_bert\n  model_config: {hidden_size: 32}\n")
    raw = tiny_sweep(tmp_path / "out", model=None, tokenizer=None,
                     starting_checkpoint=str(run / "checkpoints" / "latest-rank0.pt"))
    cfg = resolve(from_dict(GlueConfig, raw))
    assert cfg.model == {"name": "hf_bert", "model_config": {"hidden_size": 32}}
    assert Path(cfg.tokenizer) == run / "tokenizer"
    with pytest.raises(UserError, match="model: null needs starting_checkpoint"):
        resolve(from_dict(GlueConfig, tiny_sweep(tmp_path / "out", model=None)))


def test_a_tokenizer_other_than_the_pretraining_runs_is_refused(tmp_path):
    """Before: any tokenizer of a fitting size finetuned silently on ids the encoder never saw."""
    import shutil

    from tests.conftest import SHARED_DATA

    bert, modernbert = (SHARED_DATA / "tokenizers" / name for name in ("bert-base-uncased", "modernbert"))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest-rank0.pt").write_bytes(b"x")
    (run / "config.yaml").write_text(f"model: {{name: hf_bert}}\ntokenizer: {{name: {bert}}}\n")
    start = str(run / "checkpoints" / "latest-rank0.pt")
    named = resolve(from_dict(GlueConfig, tiny_sweep(tmp_path / "out", tokenizer=None, starting_checkpoint=start)))
    assert named.tokenizer == str(bert)  # a run with a named tokenizer saves none: its config names it
    with pytest.raises(UserError, match=rf"^tokenizer: '{modernbert}' is not the tokenizer .*latest-rank0\.pt was "
                                        rf"trained with \('{bert}'\)"):
        resolve(from_dict(GlueConfig, tiny_sweep(tmp_path / "out", tokenizer=str(modernbert),
                                                 starting_checkpoint=start)))
    shutil.copytree(bert, run / "tokenizer")  # saved with the run; the same tokenizer at another path passes
    cfg = resolve(from_dict(GlueConfig, tiny_sweep(tmp_path / "out", tokenizer=str(bert), starting_checkpoint=start)))
    assert cfg.tokenizer == str(bert)


def test_glue_py_user_error_is_one_line_and_exit_code_2():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(REPO / "glue.py"), "yamls/finetune-glue/quickstart.yaml", "taks=[rte]"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "bertforge: error: taks: unknown key (did you mean 'tasks'?); valid keys here: cache_dir, code_paths, "
        "data_dir, defaults, model, optimizer, output_dir, parallel_workers, precision, python_log_level, "
        "save_checkpoints, scheduler, "
        "seeds, starting_checkpoint, task_settings, tasks, tokenizer")


_TOY_CLASSIFIER = '''
from bertforge.registry import classifiers


@classifiers.register("toy_glue_classifier_{tag}")
def build(tokenizer, num_labels, width: int = 4):
    raise NotImplementedError
'''


def test_code_paths_register_a_classifier_for_the_sweep(tmp_path, clean_registries):
    plugin = tmp_path / "my_classifier.py"
    plugin.write_text(_TOY_CLASSIFIER.replace("{tag}", "a"))
    model = {"name": "toy_glue_classifier_a", "width": 8}
    with pytest.raises(ConfigError, match="unknown classifier 'toy_glue_classifier_a'"):
        resolve(from_dict(GlueConfig, tiny_sweep(tmp_path / "out", model=model)))
    cfg = resolve(from_dict(GlueConfig, tiny_sweep(tmp_path / "out", model=model, code_paths=[str(plugin)])))
    assert cfg.code_paths == [str(plugin)]
    with pytest.raises(ConfigError, match=r"model.widht: unknown key \(did you mean 'width'\?\)"):
        bad = {"name": "toy_glue_classifier_a", "widht": 8}
        resolve(from_dict(GlueConfig, tiny_sweep(tmp_path / "out", model=bad, code_paths=[str(plugin)])))


def test_model_null_sweep_imports_the_pretraining_runs_code_paths(tmp_path, clean_registries):
    plugin = tmp_path / "run_plugin.py"
    plugin.write_text(_TOY_CLASSIFIER.replace("{tag}", "b"))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest-rank0.pt").write_bytes(b"x")
    (run / "config.yaml").write_text(f"code_paths: [{plugin}]\nmodel:\n  name: toy_glue_classifier_b\n")
    raw = tiny_sweep(tmp_path / "out", model=None, tokenizer=None,
                     starting_checkpoint=str(run / "checkpoints" / "latest-rank0.pt"))
    cfg = resolve(from_dict(GlueConfig, raw))
    assert cfg.model == {"name": "toy_glue_classifier_b"} and cfg.code_paths == [str(plugin)]
