"""The ``parallelism`` block: checks before any work, FSDP units from the model, and a two-process FSDP run
(train, sharded checkpoint, sharded resume, whole Hugging Face export)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from composer.models import ComposerModel
from torch import nn

from bertforge.errors import ConfigError
from bertforge.parallel import mark_fsdp_units, parallelism_config
from tests.conftest import REPO, tiny_overrides

FLEXBERT_YAML = REPO / "yamls" / "quickstart" / "flexbert-tiny.yaml"
COMPOSER = str(Path(sys.executable).parent / "composer")


@pytest.fixture
def fsdp1(monkeypatch):
    monkeypatch.delenv("FSDP_VERSION", raising=False)


@pytest.fixture
def fsdp2(monkeypatch):
    monkeypatch.setenv("FSDP_VERSION", "2")


def test_no_block_means_ddp(fsdp1):
    assert parallelism_config(None, 8, True) is None
    assert parallelism_config({"fsdp": None}, 8, True) is None


def test_fsdp_block_passes_to_composer(fsdp1):
    block = {"fsdp": {"sharding_strategy": "FULL_SHARD", "mixed_precision": "PURE", "state_dict_type": "sharded",
                      "activation_cpu_offload": False, "limit_all_gathers": True}}
    assert parallelism_config(block, 8, True, "auto") == block


@pytest.mark.parametrize("block,key,words", [
    ({"fdsp": {}}, "parallelism.fdsp", "did you mean 'fsdp'"),
    ({"fsdp": {"sharding_stratgy": "FULL_SHARD"}}, "parallelism.fsdp.sharding_stratgy", "'sharding_strategy'"),
    ({"fsdp": {"sharding_strategy": "FULL"}}, "parallelism.fsdp.sharding_strategy", "FULL_SHARD"),
    ({"fsdp": {"state_dict_type": "local"}}, "parallelism.fsdp.state_dict_type", "full, sharded"),
    ({"fsdp": {"activation_cpu_offload": "yes"}}, "parallelism.fsdp.activation_cpu_offload", "true or false"),
    ({"fsdp": {"mixed_precision": {"param_dtype": "int8"}}}, "parallelism.fsdp.mixed_precision.param_dtype",
     "not a dtype"),
    ({"fsdp": "FULL_SHARD"}, "parallelism.fsdp", "mapping"),
], ids=["top-key", "fsdp-key", "strategy", "state-dict", "bool", "dtype", "not-a-mapping"])
def test_bad_fsdp_settings_fail_in_one_line(fsdp1, block, key, words):
    with pytest.raises(ConfigError) as err:
        parallelism_config(block, 8, True)
    assert err.value.key == key and words in str(err.value) and "\n" not in str(err.value)


def test_fsdp_on_one_process_is_refused(fsdp1):
    with pytest.raises(ConfigError, match="this run has 1; launch with `composer -n"):
        parallelism_config({"fsdp": {}}, 1, True)


def test_composer_fsdp1_on_cpu_is_refused_with_the_fsdp2_way_out(fsdp1):
    with pytest.raises(ConfigError, match="needs CUDA GPUs.*FSDP_VERSION=2"):
        parallelism_config({"fsdp": {"sharding_strategy": "FULL_SHARD"}}, 2, False)


def test_fsdp2_keys_are_checked_against_fsdp2(fsdp2):
    assert parallelism_config({"fsdp": {"reshard_after_forward": True}}, 2, False) is not None
    with pytest.raises(ConfigError, match="FSDP1 setting.*reshard_after_forward: true is FULL_SHARD"):
        parallelism_config({"fsdp": {"sharding_strategy": "FULL_SHARD"}}, 2, False)
    with pytest.raises(ConfigError, match="'auto' needs Composer's FSDP"):
        parallelism_config({"fsdp": {}}, 2, True, "auto")


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Linear(4, 4)


class _Toy(ComposerModel):
    def __init__(self, with_units: bool):
        super().__init__()
        self.model = nn.Sequential(nn.Embedding(10, 4), nn.ModuleList([_Block(), _Block()]))
        if with_units:
            self.fsdp_units = lambda: list(self.model[1])

    def forward(self, batch):
        return batch

    def loss(self, outputs, batch):
        return outputs


def test_each_listed_block_is_one_unit():
    toy = _Toy(with_units=True)
    assert mark_fsdp_units(toy) == 2
    wrap = toy.model.fsdp_wrap_fn  # what Composer's FSDP (v1 and v2) asks of each module under the child it wraps
    assert [wrap(m) for m in toy.model[1]] == [True, True]
    assert not wrap(toy.model[0]) and not wrap(toy.model[1][0].mlp) and not wrap(toy.model[1])


def test_a_model_without_units_is_one_unit_with_a_warning(caplog):
    toy = _Toy(with_units=False)
    with caplog.at_level(logging.WARNING, logger="bertforge"):
        assert mark_fsdp_units(toy) == 0
    assert "sharded as one unit" in caplog.text and not hasattr(toy.model, "fsdp_wrap_fn")


def _launch(args: list[str], fsdp_version: str, log: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FSDP_VERSION": fsdp_version}
    with open(log, "ab") as out:
        result = subprocess.run([COMPOSER, "-n", "2", "main.py", *args], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, timeout=600)
    assert result.returncode == 0, log.read_text()[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("fsdp_version,fsdp", [
    pytest.param("2", "{reshard_after_forward: true, state_dict_type: sharded}", id="fsdp2-cpu"),
    pytest.param("1", "{sharding_strategy: FULL_SHARD, state_dict_type: sharded}", id="fsdp1-gpu",
                 marks=[pytest.mark.gpu, pytest.mark.skipif(torch.cuda.device_count() < 2,
                                                            reason="Composer's FSDP (v1) needs 2 CUDA GPUs")]),
])
def test_fsdp_trains_resumes_sharded_and_exports_whole(sample_mds, tmp_path, fsdp_version, fsdp):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from bertforge.checkpoints import load_whole, read_model_weights
    from bertforge.config import load_config
    from bertforge.train import build_model
    from scripts.export_hf import export_checkpoint

    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    extra = {"save_interval": "2ba", "eval_interval": "2ba", "autoresume": True, "callbacks": "[]",
             "save_num_checkpoints_to_keep": -1, "parallelism.fsdp": fsdp, "model.model_config.num_hidden_layers": 2,
             "python_log_level": "info"}
    args = [str(FLEXBERT_YAML), *tiny_overrides(sample_mds, run_dir, **extra)]
    _launch([*args, "max_duration=4ba"], fsdp_version, log)
    assert "FSDP: 2 units, one per block" in log.read_text()
    ckpt = run_dir / "checkpoints"
    assert sorted(p.name for p in (ckpt / "ep0-ba4").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    stamp = (ckpt / "ep0-ba4" / "__0_0.distcp").stat().st_mtime_ns

    # autoresume from the sharded ep0-ba4; hf_export gathers the shards at the end
    _launch([*args, "max_duration=6ba", "callbacks=[{name: hf_export}]"], fsdp_version, log)
    assert (ckpt / "ep0-ba4" / "__0_0.distcp").stat().st_mtime_ns == stamp, "the rerun started over"
    whole = load_whole(str(ckpt / "ep0-ba6"))["state"]
    assert whole["timestamp"]["Timestamp"]["batch"] == 6 and whole["timestamp"]["Timestamp"]["sample"] == 96
    weights = read_model_weights(str(ckpt / "ep0-ba6"), key="starting_checkpoint")  # e.g. a GLUE start
    assert weights.keys() == whole["model"].keys()
    assert all(torch.equal(weights[k], whole["model"][k]) for k in weights)

    hf = AutoModelForMaskedLM.from_pretrained(export_checkpoint(str(run_dir), out=str(tmp_path / "hf"))).eval()
    gathered = AutoModelForMaskedLM.from_pretrained(run_dir / "hf").eval()  # written by the callback
    for name, tensor in hf.state_dict().items():
        torch.testing.assert_close(gathered.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "hf")
    ours = build_model(load_config(run_dir / "config.yaml"), tokenizer)
    ours.load_state_dict(whole["model"])  # strict: every weight of both ranks' shards is in the whole state
    batch = tokenizer(["To be, or not to be, that is the question.", "Hark!"], padding=True, return_tensors="pt")
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        want, got = ours.eval()(dict(batch)).logits[real], hf(**batch).logits[real]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)  # fp32 export parity, real tokens
