"""Config loading and validation: every user error names its key, suggests a fix, exits with code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertforge.config import TrainConfig, load_config
from bertforge.config.load import load_raw
from bertforge.config.validate import from_dict
from bertforge.errors import ConfigError, UserError
from bertforge.train import validate
from tests.conftest import QUICKSTART_YAML, REPO, run_main, tiny_overrides, write_mds

TRAIN_YAML_FOLDERS = ("pretrain", "quickstart", "generative")
ALL_YAMLS = sorted(p for kind in TRAIN_YAML_FOLDERS for p in (REPO / "yamls" / kind).glob("*.yaml"))


@pytest.mark.parametrize("path", ALL_YAMLS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_yaml_validates(path: Path):
    cfg = load_config(path)
    assert isinstance(cfg, TrainConfig)
    # component blocks are checked against the registry too (data folders are not, they may not exist yet)
    from bertforge import registry

    registry.models.validate(cfg.model, "model")
    registry.optimizers.validate(cfg.optimizer, "optimizer")
    registry.schedulers.validate(cfg.scheduler, "scheduler")
    if cfg.phases:  # every phase's merged config and its own blocks
        from bertforge.phases import plan_phases

        for phase in plan_phases(cfg, "checkpoints"):
            registry.models.validate(phase.cfg.model, f"phases[{phase.index}].model")
            registry.schedulers.validate(phase.cfg.scheduler, f"phases[{phase.index}].scheduler")


def test_override_reaches_nested_key():
    cfg = load_config(QUICKSTART_YAML, ["train_loader.dataset.local=data/other", "max_duration=7ba"])
    assert cfg.train_loader.dataset.local == "data/other"
    assert cfg.max_duration == "7ba"


def test_unknown_nested_key_names_full_path_with_suggestion():
    with pytest.raises(ConfigError) as err:
        load_config(QUICKSTART_YAML, ["train_loader.dataset.shufle=true"])
    assert "train_loader.dataset.shufle" in str(err.value)
    assert "did you mean 'shuffle'" in str(err.value)


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match=r"max_durration: unknown key \(did you mean 'max_duration'\?\)"):
        load_config(QUICKSTART_YAML, ["max_durration=10ba"])


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match="global_train_batch_size: expected an integer, got 'many'"):
        load_config(QUICKSTART_YAML, ["global_train_batch_size=many"])


def test_literal_lists_allowed_values():
    with pytest.raises(ConfigError) as err:
        load_config(QUICKSTART_YAML, ["precision=bf16"])
    msg = str(err.value)
    assert msg.startswith("precision:") and "'amp_bf16'" in msg and "'fp32'" in msg


def test_impossible_value_names_key():
    with pytest.raises(ConfigError, match=r"train_loader.mlm_probability: 1.5 must be strictly between 0 and 1"):
        load_config(QUICKSTART_YAML, ["train_loader.mlm_probability=1.5"])
    with pytest.raises(ConfigError, match="max_duration: '100 batches' is not a time"):
        load_config(QUICKSTART_YAML, ["max_duration=100 batches"])


def test_missing_required_key():
    with pytest.raises(ConfigError, match="train_loader: required key is missing"):
        from_dict(TrainConfig, {"model": {"name": "hf_bert"}, "max_duration": "1ba"})


def test_component_kwargs_checked_against_builder():
    from bertforge import registry

    with pytest.raises(ConfigError, match=r"optimizer.weight_dacay: unknown key \(did you mean 'weight_decay'\?\)"):
        registry.optimizers.validate({"name": "decoupled_adamw", "weight_dacay": 0.1}, "optimizer")
    with pytest.raises(ConfigError, match=r"scheduler.name: unknown scheduler 'cosine'.*choose one of"):
        registry.schedulers.validate({"name": "cosine"}, "scheduler")
    with pytest.raises(ConfigError, match="optimizer.lr: expected a number"):
        registry.optimizers.validate({"name": "adamw", "lr": "fast"}, "optimizer")


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_raw(bad)
    with pytest.raises(UserError, match="config file not found: .*nope.yaml"):
        load_raw(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="not of the form key=value"):
        load_raw(QUICKSTART_YAML, ["max_duration"])


def _cfg(mds: Path, tmp_path: Path) -> TrainConfig:
    return load_config(QUICKSTART_YAML, tiny_overrides(mds, tmp_path / "run"))


def test_missing_data_folder(tmp_path):
    with pytest.raises(UserError, match=r"train_loader.dataset.local: data folder not found: .*missing/train"):
        validate(_cfg(tmp_path / "missing", tmp_path))


def test_empty_shard_set(tmp_path):
    write_mds(tmp_path / "mds" / "train", [])
    write_mds(tmp_path / "mds" / "val", ["a b c"])
    with pytest.raises(UserError, match=r"holds no samples \(empty shard set\)"):
        validate(_cfg(tmp_path / "mds", tmp_path))


def test_corrupt_shard_and_index(tmp_path):
    mds = tmp_path / "mds"
    write_mds(mds / "train", ["some text"] * 50)
    write_mds(mds / "val", ["more text"] * 5)
    shard = next((mds / "train").glob("shard.*.mds"))
    shard.write_bytes(shard.read_bytes()[:10])
    with pytest.raises(UserError, match=r"shard .*shard.00000.mds is corrupt or truncated"):
        validate(_cfg(mds, tmp_path))
    (mds / "train" / "index.json").write_text("{not json")
    with pytest.raises(UserError, match=r"index.json is corrupt"):
        validate(_cfg(mds, tmp_path))


def test_tokenizer_larger_than_embedding():
    from transformers import AutoTokenizer

    from bertforge.models.hf_bert import build_hf_mlm

    tok = AutoTokenizer.from_pretrained(str(REPO.parent / "shared/data/tokenizers/bert-base-uncased"))
    with pytest.raises(UserError, match=r"tokenizer has 30522 tokens but the model's vocab_size is 1000"):
        build_hf_mlm(tok, model_config={"vocab_size": 1000, "hidden_size": 32, "num_hidden_layers": 1,
                                        "num_attention_heads": 1, "intermediate_size": 32})
    with pytest.raises(ConfigError, match=r"model.model_config.hiden_size: unknown key .*did you mean 'hidden_size'"):
        build_hf_mlm(tok, model_config={"hiden_size": 32})


def test_ids_dataset_with_other_tokenizer_fails(sample_mds, tmp_path):
    mds = tmp_path / "mds"
    write_mds(mds / "train", ["x y"] * 4)
    write_mds(mds / "val", ["x y"] * 2)
    (mds / "bertforge_meta.json").write_text(json.dumps({"format": "tokens", "tokenizer": "some/tok"}))
    from bertforge.train import build_tokenizer

    with pytest.raises(ConfigError, match="tokenizer.name: .* holds ids from tokenizer 'some/tok'"):
        build_tokenizer(_cfg(mds, tmp_path))


def test_ids_written_by_another_tokenizer_of_more_tokens_fail(tmp_path):
    """Before: only a smaller vocabulary was refused, so bert-base-uncased ids trained silently under ModernBERT's
    tokenizer (50368 tokens). The data's tokenizer_fingerprint decides; the same tokenizer at another path passes."""
    import shutil

    from bertforge.data.convert import convert
    from bertforge.train import build_tokenizer
    from tests.conftest import SAMPLE_TEXT, SHARED_DATA

    bert = SHARED_DATA / "tokenizers" / "bert-base-uncased"
    head = tmp_path / "head.txt"
    head.write_text("\n".join(SAMPLE_TEXT.read_text(encoding="utf-8").splitlines()[:200]) + "\n", encoding="utf-8")
    mds = tmp_path / "mds"
    convert(head, mds, tokenizer=str(bert), splits="train,val")
    assert len(json.loads((mds / "bertforge_meta.json").read_text())["tokenizer_fingerprint"]) == 16
    other = SHARED_DATA / "tokenizers" / "modernbert"
    with pytest.raises(UserError, match=rf"^tokenizer\.name: {mds} holds ids of tokenizer '{bert}', whose vocabulary "
                                        rf"or special tokens differ from '{other}'"):
        build_tokenizer(_named(mds, tmp_path, other))
    copy = tmp_path / "same-tokenizer"
    shutil.copytree(bert, copy)
    assert len(build_tokenizer(_named(mds, tmp_path, copy))) == 30522


def test_load_path_of_a_run_with_another_tokenizer_fails(sample_mds, tmp_path):
    """Before: weights pretrained on one tokenizer's ids trained on, silently, with another's."""
    from bertforge.train import build_tokenizer
    from tests.conftest import SHARED_DATA

    bert, modernbert = (SHARED_DATA / "tokenizers" / name for name in ("bert-base-uncased", "modernbert"))
    other = tmp_path / "other-run"
    (other / "checkpoints").mkdir(parents=True)
    (other / "checkpoints" / "ep0-ba10-rank0.pt").write_bytes(b"x")
    (other / "config.yaml").write_text(f"tokenizer: {{name: {bert}}}\n")
    load = f"load_path={other / 'checkpoints' / 'ep0-ba10-rank0.pt'}"
    with pytest.raises(UserError, match=rf"^tokenizer\.name: '{modernbert}' is not the tokenizer .*ep0-ba10-rank0\.pt "
                                        rf"was trained with \('{bert}'\)"):
        build_tokenizer(_named(sample_mds, tmp_path, modernbert, load))
    assert len(build_tokenizer(_named(sample_mds, tmp_path, bert, load))) == 30522


def _named(mds: Path, tmp_path: Path, tokenizer: Path, *extra: str) -> TrainConfig:
    return load_config(QUICKSTART_YAML, [*tiny_overrides(mds, tmp_path / "run"), f"tokenizer.name={tokenizer}", *extra])


def test_cli_user_error_is_one_line_exit_2(tmp_path):
    result = run_main([str(QUICKSTART_YAML), "optimizer.lrr=0.1"], timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["bertforge: error: optimizer.lrr: unknown key (did you mean 'lr'?); "
                     "valid keys here: betas, eps, lr, no_decay_norms_biases, weight_decay"]
    assert "Traceback" not in result.stderr


def test_cli_missing_data_exit_2(tmp_path):
    result = run_main([str(QUICKSTART_YAML), f"train_loader.dataset.local={tmp_path}/nothing"], timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("bertforge: error: train_loader.dataset.local")


def test_missing_load_path(sample_mds, tmp_path):
    cfg = load_config(QUICKSTART_YAML, tiny_overrides(sample_mds, tmp_path / "run", load_path=str(tmp_path / "x.pt")))
    with pytest.raises(ConfigError, match=r"load_path: checkpoint not found: .*x.pt"):
        validate(cfg)
