"""A model's ``model_config`` is checked against its family's config class before any tokenizer, data or model."""

from __future__ import annotations

import runpy
import sys
import time

import pytest

from bertforge import registry, train
from bertforge.errors import ConfigError
from tests.conftest import QUICKSTART_YAML, REPO, tiny_overrides

QUICKSTART = REPO / "yamls" / "quickstart"

# family -> (quickstart YAML, (typo override, expected message), (bad value override, expected message))
CASES = {
    "hf_bert": (
        QUICKSTART_YAML,
        ("hiden_size=32", r"model.model_config.hiden_size: unknown key for BertConfig \(did you mean 'hidden_size'"),
        ("num_hidden_layers=two", r"model.model_config.num_hidden_layers: expected an integer, got 'two'"),
    ),
    "flexbert": (
        QUICKSTART / "flexbert-tiny.yaml",
        ("attention_backnd=sdpa", r"model.model_config.attention_backnd: unknown key \(did you mean 'attention_back"),
        ("num_attention_heads=5", r"model.model_config.num_attention_heads: hidden_size 32 is not divisible by"),
    ),
    "m2_bert": (
        QUICKSTART / "m2-bert-tiny.yaml",
        ("filter_ordr=8", r"model.model_config.filter_ordr: unknown key \(did you mean 'filter_order'"),
        ("filter_emb_dim=4", r"model.model_config.filter_emb_dim: 4 must be odd"),
    ),
}


@pytest.fixture
def no_work(monkeypatch):
    """Make training a tokenizer, building a model or reading data fail the test if validation lets them run."""

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the config was validated")

    for name in ("build_tokenizer", "tokenizer_for_run", "build_model", "build_dataloaders"):
        monkeypatch.setattr(train, name, forbidden)


@pytest.mark.parametrize("case", ["typo", "bad_value"])
@pytest.mark.parametrize("family", sorted(CASES))
def test_model_config_fails_fast_before_any_work(family, case, sample_mds, tmp_path, no_work):
    yaml, typo, bad = CASES[family]
    override, message = typo if case == "typo" else bad
    argv = [str(yaml), *tiny_overrides(sample_mds, tmp_path / "run"), f"model.model_config.{override}"]
    registry.models.names()  # built-in imports are a one-time cost, not part of the check
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=message):
        train.main(argv)
    assert time.perf_counter() - start < 2.0


def test_flash_attn_backend_without_flash_attn_fails_before_any_work(sample_mds, tmp_path, no_work):
    from bertforge.ops.attention import flash_attn_missing

    if flash_attn_missing() is None:
        pytest.skip("flash-attn can run here")
    argv = [str(QUICKSTART / "flexbert-tiny.yaml"), *tiny_overrides(sample_mds, tmp_path / "run"),
            "model.model_config.attention_backend=flash_attn"]
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^model.model_config.attention_backend: flash_attn needs flash-attn"):
        train.main(argv)
    assert time.perf_counter() - start < 2.0


def test_hf_model_type_and_pretrained_folder_are_checked(tmp_path):
    from transformers import ModernBertConfig

    with pytest.raises(ConfigError, match=r"model.model_type: unknown transformers model type 'bret' \(did you mean"):
        registry.models.validate({"name": "hf_bert", "model_type": "bret"}, "model")
    with pytest.raises(ConfigError, match=r"model.model_config.hidden_dim: unknown key for RobertaConfig"):
        registry.models.validate({"name": "hf_bert", "model_type": "roberta", "model_config": {"hidden_dim": 8}},
                                 "model")
    ModernBertConfig().save_pretrained(tmp_path)  # a local checkpoint folder: its config class is used
    block = {"name": "hf_bert", "pretrained_model_name": str(tmp_path), "model_config": {"global_rope_thetaa": 1.0}}
    with pytest.raises(ConfigError, match=r"unknown key for ModernBertConfig \(did you mean 'global_rope_theta'"):
        registry.models.validate(block, "model")
    block["model_config"] = {"global_rope_theta": 1.0e4, "num_hidden_layers": 2}
    assert registry.models.validate(block, "model")["model_config"] == block["model_config"]


def test_modernbert_4x_keys_on_a_pretrained_config_apply_or_are_refused(tmp_path):
    """transformers 5 turns them into rope_parameters / layer_types only in the constructor: there they are refused."""
    from transformers import AutoTokenizer, ModernBertConfig

    from bertforge.models.hf_bert import build_config
    from tests.conftest import SHARED_DATA, TRANSFORMERS_5

    tok = AutoTokenizer.from_pretrained(SHARED_DATA / "tokenizers" / "modernbert")
    ModernBertConfig(vocab_size=len(tok)).save_pretrained(tmp_path)
    if TRANSFORMERS_5:
        with pytest.raises(ConfigError, match=r"^model.model_config.global_rope_theta: ModernBertConfig derives"):
            build_config(tok, None, str(tmp_path), {"global_rope_theta": 1234.0}, None)
        built = build_config(tok, "modernbert", None, {"global_rope_theta": 1234.0, "num_hidden_layers": 4,
                                                       "global_attn_every_n_layers": 2}, None)
        assert built.rope_parameters["full_attention"]["rope_theta"] == 1234.0
        assert built.layer_types == ["full_attention", "sliding_attention"] * 2
    else:
        assert build_config(tok, None, str(tmp_path), {"global_rope_theta": 1234.0}, None).global_rope_theta == 1234.0


def test_hf_keys_a_pretrained_checkpoint_decides_are_refused(tmp_path):
    """Before: model_type and pad_vocab_to_multiple_of next to pretrained_model_name were silently ignored."""
    from transformers import AutoTokenizer, ModernBertConfig

    from bertforge.models.hf_bert import build_hf_mlm
    from tests.conftest import SHARED_DATA

    tok = AutoTokenizer.from_pretrained(SHARED_DATA / "tokenizers" / "modernbert")
    ModernBertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     vocab_size=len(tok)).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"^model.model_type: 'bert', but '.*' is modernbert; drop model_type"):
        build_hf_mlm(tok, model_type="bert", pretrained_model_name=str(tmp_path))
    with pytest.raises(ConfigError, match=r"^model.pad_vocab_to_multiple_of: the vocabulary of '.*' is its own"):
        build_hf_mlm(tok, pretrained_model_name=str(tmp_path), pad_vocab_to_multiple_of=64)
    assert build_hf_mlm(tok, model_type="modernbert", pretrained_model_name=str(tmp_path)) is not None


def test_classifier_model_config_is_checked_too():
    with pytest.raises(ConfigError, match=r"model.model_config.hiden_size: unknown key \(did you mean 'hidden_size'"):
        registry.classifiers.validate({"name": "flexbert", "model_config": {"hiden_size": 8}}, "model")


def test_main_py_shows_one_line_and_exits_2(monkeypatch, capsys):
    """main.py run in this process (runpy), so the check costs no second import of torch and composer."""
    argv = ["main.py", str(QUICKSTART / "flexbert-tiny.yaml"), "model.model_config.attention_backnd=sdpa"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "main.py"), run_name="__main__")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "bertforge: error: model.model_config.attention_backnd: unknown key (did you mean 'attention_backend'?); "
        f"valid keys here: {', '.join(sorted(_flexbert_fields()))}"
    ]


def _flexbert_fields() -> list[str]:
    import dataclasses

    from bertforge.models.flexbert.config import FlexBertConfig

    return [f.name for f in dataclasses.fields(FlexBertConfig) if f.init]
