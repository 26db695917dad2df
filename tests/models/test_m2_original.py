"""Original M2-BERT checkpoints in and out: parity with the original code's outputs, exact round trips, and
one-line refusals of wrong or partial files.

The fixtures (tests/fixtures/m2_original/*.pt, made by make_fixture.py from HazyResearch/m2's own code on the
CPU in float32) hold the original's state dict, config, inputs and its MLM logits and last hidden states.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bertforge import registry
from bertforge.checkpoints import read_model_weights
from bertforge.convert.__main__ import main as convert_main
from bertforge.errors import ConfigError, UserError
from bertforge.models.convert.m2_original import (
    config_from_original,
    config_to_original,
    normalize_keys,
    state_from_original,
    state_to_original,
)
from bertforge.models.m2.model import M2BertForMaskedLM

FIXTURES = Path(__file__).parents[1] / "fixtures" / "m2_original"
VARIANTS = ("legacy", "standard")
ATOL = 1e-5  # fp32; measured max |diff|: hidden 1.5e-6, logits 3.3e-6 (logits up to 4.7 in size)


def _fixture(variant: str) -> dict:
    return torch.load(FIXTURES / f"{variant}.pt", map_location="cpu", weights_only=False)


def _ours(fx: dict) -> M2BertForMaskedLM:
    cfg = config_from_original(fx["config"])
    cfg.fftconv_backend = "torch"
    state, _ = state_from_original(fx["state_dict"], cfg)
    model = M2BertForMaskedLM(cfg).eval()
    model.load_state_dict(state, strict=True)
    return model


def _outputs(model: M2BertForMaskedLM, fx: dict) -> tuple[torch.Tensor, torch.Tensor]:
    ids = fx["input_ids"]
    mask = torch.ones_like(ids)  # unpadded: the original convolves over padding, we do not
    with torch.no_grad():
        hidden = model.model(ids, mask, fx["token_type_ids"])
        logits = model(ids, mask, token_type_ids=fx["token_type_ids"]).logits
    return hidden, logits


@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_equal_the_original_code(variant):
    fx = _fixture(variant)
    model = _ours(fx)
    assert model.config.mixer_input_norm is (variant == "legacy")
    hidden, logits = _outputs(model, fx)
    torch.testing.assert_close(hidden, fx["hidden"], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits, fx["logits"], atol=ATOL, rtol=0)


def test_legacy_input_norm_matters():
    """Without the mixer's input LayerNorm the legacy checkpoint computes something else (the test can fail)."""
    fx = _fixture("legacy")
    model = _ours(fx)
    for layer in model.model.layers:
        layer.mixer.input_norm = None
    hidden, _ = _outputs(model, fx)
    assert (hidden - fx["hidden"]).abs().max() > 1e-2


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trips_are_bit_identical(variant):
    fx = _fixture(variant)
    cfg = config_from_original(fx["config"])
    ours, _ = state_from_original(fx["state_dict"], cfg)
    back = state_to_original(ours, cfg)
    original = normalize_keys(fx["state_dict"])
    assert sorted(back) == sorted(original)
    assert all(torch.equal(back[k], original[k]) and back[k].dtype == original[k].dtype for k in original)
    again, _ = state_from_original(back, cfg)
    assert sorted(again) == sorted(ours) and all(torch.equal(again[k], ours[k]) for k in ours)
    assert config_from_original(config_to_original(cfg)) == cfg


def test_composer_checkpoint_form(tmp_path):
    fx = _fixture("standard")
    path = tmp_path / "ep1-ba10-rank0.pt"
    torch.save({"state": {"model": {f"model.{k}": v for k, v in fx["state_dict"].items()}}, "rng": None}, path)
    state = normalize_keys(read_model_weights(str(path)))
    assert sorted(state) == sorted(fx["state_dict"])


def _fails(fx: dict, state: dict, match: str, config: dict | None = None, error=UserError) -> None:
    with pytest.raises(error, match=match) as info:
        state_from_original(state, config_from_original(config or fx["config"]))
    assert "\n" not in str(info.value)


def test_partial_renamed_and_misshapen_tensors_fail_naming_them():
    fx = _fixture("standard")
    sd = dict(fx["state_dict"])
    gone = "bert.encoder.layer.1.attention.filter_fn2.implicit_filter_rev.4.bias"
    _fails(fx, {k: v for k, v in sd.items() if k != gone}, f"missing {gone}")
    renamed = {("bert.encoder.layer.0.mlp.wo.b" if k == "bert.encoder.layer.0.mlp.wo.bias" else k): v
               for k, v in sd.items()}
    _fails(fx, renamed, r"unexpected bert\.encoder\.layer\.0\.mlp\.wo\.b; "
                        r"missing bert\.encoder\.layer\.0\.mlp\.wo\.bias")
    wrong = {**sd, "bert.encoder.layer.0.attention.in_linear.weight": torch.zeros(96, 31)}
    _fails(fx, wrong, r"bert\.encoder\.layer\.0\.attention\.in_linear\.weight \(96, 31\) \(config: \(96, 32\)\)")
    untied = {**sd, "bert.encoder.layer.0.attention.filter_fn.implicit_filter.3.freq": torch.ones(1, 16)}
    _fails(fx, untied, r"implicit_filter\.3\.freq \(a copy of the shared sine frequencies\)")
    decay = {**sd, "bert.encoder.layer.1.attention.filter_fn.modulation.deltas": torch.full((1, 1, 32), -5.0)}
    _fails(fx, decay, r"layer\.1\.attention\.filter_fn\.modulation\.deltas")


def test_unknown_or_unexpressible_config_fails_naming_the_key():
    fx = _fixture("standard")
    with pytest.raises(ConfigError, match="config.json: .*use_rotary_long_conv: unknown"):
        config_from_original({**fx["config"], "use_rotary_long_conv": True})
    with pytest.raises(ConfigError, match="use_positional_encodings=False cannot be expressed by m2_bert"):
        config_from_original({**fx["config"], "use_positional_encodings": False})
    with pytest.raises(UserError, match="lacks long_conv_l_max"):
        config_from_original({k: v for k, v in fx["config"].items() if k != "long_conv_l_max"})


def test_unreadable_file_fails_naming_the_path(tmp_path):
    bad = tmp_path / "pytorch_model.bin"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=f"{bad}: cannot be read as a checkpoint"):
        read_model_weights(str(bad))


def _tokenizer_folder(tmp_path: Path) -> str:
    from transformers import BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(40)]) + "\n")
    folder = tmp_path / "tok"
    BertTokenizerFast(str(vocab)).save_pretrained(folder)  # positional: vocab_file in transformers 4, vocab in 5
    return str(folder)


def _hf_repo(tmp_path: Path, fx: dict, state: dict) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    torch.save(state, repo / "pytorch_model.bin")
    (repo / "config.json").write_text(json.dumps(fx["config"]))
    return repo


def test_cli_writes_a_run_that_export_and_glue_load(tmp_path, capsys):
    from bertforge.config import load_config
    from bertforge.config.validate import from_dict
    from bertforge.glue.checkpoint import load_encoder
    from bertforge.glue.config import GlueConfig
    from bertforge.glue.sweep import resolve
    from bertforge.train import build_model
    from scripts.export_hf import export_checkpoint

    fx = _fixture("legacy")
    repo, run = _hf_repo(tmp_path, fx, fx["state_dict"]), tmp_path / "runs" / "m2"
    convert_main(["m2-original", str(repo / "pytorch_model.bin"), "--config", str(repo / "config.json"),
                  "--out", str(run), "--tokenizer", _tokenizer_folder(tmp_path)])
    assert "tensors mapped" in capsys.readouterr().out
    # what scripts/export_hf.py does before writing: the run's config and tokenizer rebuild the model
    cfg = load_config(run / "config.yaml")
    model = build_model(cfg, registry_tokenizer(run))
    model.load_state_dict(torch.load(run / "checkpoints" / "latest-rank0.pt", weights_only=False)["state"]["model"])
    model.model.config.fftconv_backend = "torch"
    hidden, logits = _outputs(model.model.eval(), fx)
    torch.testing.assert_close(logits, fx["logits"], atol=ATOL, rtol=0)
    try:  # loads like export_hf.py; the transformers folder itself needs M2's HF export (issue 15 item 2)
        assert (Path(export_checkpoint(str(run), out=str(tmp_path / "hf"))) / "config.json").is_file()
    except UserError as err:
        assert "Hugging Face export" in str(err)
    # glue: the run folder itself as starting_checkpoint, model and tokenizer from the run
    glue = resolve(from_dict(GlueConfig, {"model": None, "tokenizer": None, "starting_checkpoint": str(run),
                                          "output_dir": str(tmp_path / "glue"), "tasks": ["rte"], "seeds": [17],
                                          "data_dir": None}))
    assert glue.model["name"] == "m2_bert" and glue.tokenizer == str(run / "tokenizer")
    classifier = registry.classifiers.build(glue.model, "model", registry_tokenizer(run), 2)
    report = load_encoder(classifier, read_model_weights(glue.starting_checkpoint), glue.starting_checkpoint)
    assert report.loaded and not [k for k in report.fresh if ".layers." in k or ".embeddings." in k]
    # and back to the original layout, bit for bit
    convert_main(["to-m2-original", str(run), "--out", str(tmp_path / "back")])
    back = torch.load(tmp_path / "back" / "pytorch_model.bin", weights_only=True)
    assert sorted(back) == sorted(fx["state_dict"])
    assert all(torch.equal(back[k], fx["state_dict"][k]) for k in back)
    written = json.loads((tmp_path / "back" / "config.json").read_text())
    assert config_from_original(written) == config_from_original(fx["config"])


def registry_tokenizer(run: Path):
    from bertforge.data.tokenizer import load_tokenizer

    return load_tokenizer(str(run / "tokenizer"))


def test_retrieval_checkpoint_keeps_its_pooler_and_has_no_mlm_head(tmp_path, capsys):
    """A retrieval / classification checkpoint: no MLM head, a pooler; the pooler survives the round trip."""
    fx = _fixture("standard")
    state = {k: v for k, v in fx["state_dict"].items() if not k.startswith("cls.")}
    state |= {"bert.pooler.dense.weight": torch.randn(32, 32), "bert.pooler.dense.bias": torch.randn(32)}
    repo, run = _hf_repo(tmp_path, fx, state), tmp_path / "run"
    convert_main(["m2-original", str(repo), "--out", str(run), "--tokenizer", _tokenizer_folder(tmp_path)])
    printed = capsys.readouterr().out
    assert "bert.pooler.dense.weight" in printed and "head.dense.weight" in printed
    convert_main(["to-m2-original", str(run), "--out", str(tmp_path / "back")])
    back = torch.load(tmp_path / "back" / "pytorch_model.bin", weights_only=True)
    assert sorted(back) == sorted(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_run_folder_without_checkpoint_fails_in_one_line(tmp_path):
    from bertforge.glue.checkpoint import run_checkpoint

    (tmp_path / "config.yaml").write_text("model: {name: m2_bert}\n")
    with pytest.raises(UserError, match=r"^starting_checkpoint: .*/checkpoints has no latest-rank0.pt; train the "
                       r"run first or name a checkpoint file$"):
        run_checkpoint(str(tmp_path))
    assert run_checkpoint(str(tmp_path / "absent")) is None
