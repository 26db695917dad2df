"""Families transformers has no class for (M2-BERT, FlexBERT with ALiBi) export with bertforge's own modeling code:
AutoModel / AutoModelForMaskedLM give our hidden states and MLM logits after reload (fp32, 1e-5)."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM

from bertforge.models.export import can_export_hf, export_hf
from tests.export.runs import TEXTS, encoder_hidden, from_pretrained

REMOTE = ["m2_bert", "flexbert_alibi"]


def _batch(tokenizer) -> dict:
    return dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))  # rows of 2..12 tokens: padding in every row


@pytest.fixture(scope="module")
def folders(run_of, tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    return {kind: export_hf(run_of(kind)[1], str(root / kind)) for kind in REMOTE}


@pytest.mark.parametrize("kind", REMOTE)
def test_folder_has_auto_map_code_and_weights(kind, folders, run_of):
    folder = folders[kind]
    assert can_export_hf(run_of(kind)[1])  # the refusal is gone: export_hf writes bertforge's code instead
    config = json.loads((Path(folder) / "config.json").read_text())
    assert config["model_type"] == "bertforge" and config["family"] == kind.split("_alibi")[0]
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForMaskedLM"}
    for name in ("configuration_bertforge.py", "modeling_bertforge.py", "model.safetensors", "tokenizer.json"):
        assert (Path(folder) / name).is_file(), name


@pytest.mark.parametrize("trust_remote_code", [True, False], ids=["folder-code", "registered"])
@pytest.mark.parametrize("kind", REMOTE)
def test_auto_models_match_ours_after_reload(kind, trust_remote_code, folders, run_of):
    """trust_remote_code=True runs the folder's files; False the classes importing bertforge registered."""
    model = run_of(kind)[1]
    batch = _batch(model.tokenizer)
    real = batch["attention_mask"].bool()
    encoder = from_pretrained(AutoModel, folders[kind], trust_remote_code).eval()
    mlm = from_pretrained(AutoModelForMaskedLM, folders[kind], trust_remote_code).eval()
    assert type(encoder).__name__ == "BertforgeModel" and type(mlm).__name__ == "BertforgeForMaskedLM"
    assert ("transformers_modules" in type(encoder).__module__) == trust_remote_code
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state  # (B, L, H)
        logits = mlm(**batch).logits  # (B, L, V)
        ours = model.model(batch["input_ids"], batch["attention_mask"], token_type_ids=batch["token_type_ids"])
    torch.testing.assert_close(hidden[real], encoder_hidden(model, batch)[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[real], ours.logits[real], rtol=0, atol=1e-5)
    assert mlm.decoder.weight is mlm.model.embeddings.tok_embeddings.weight  # tied again after loading
    labels = batch["input_ids"].masked_fill(~real, -100)
    loss = mlm(**batch, labels=labels).loss
    expected = torch.nn.functional.cross_entropy(ours.logits[real], batch["input_ids"][real])
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)


def test_without_bertforge_the_folder_code_says_what_to_install(folders, tmp_path, monkeypatch):
    """The folder's modeling file, imported as transformers does (a package of the folder's files), where bertforge
    cannot be imported: one line naming the package to install."""
    package = tmp_path / "exported_model"
    package.mkdir()
    for name in ("configuration_bertforge.py", "modeling_bertforge.py"):
        shutil.copy(Path(folders["m2_bert"]) / name, package / name)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "bertforge", None)  # import bertforge now fails, as where it is not installed
    with pytest.raises(ImportError) as err:
        importlib.import_module("exported_model.modeling_bertforge")
    assert str(err.value) == "this model runs bertforge's code; install it with `pip install bertforge`"
