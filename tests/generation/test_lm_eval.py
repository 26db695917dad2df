"""The lm-eval adapter on a tiny random ModernBERT, driven with lm-eval's own Instance objects (no network, no
datasets): loglikelihood is the ELBO estimate, is_greedy is the greedy sampler's check, rolling windows cover
the text once, generate_until batches and cuts at the until strings, and lm-eval's registry finds the model."""

from __future__ import annotations

import importlib.util
import sys

import pytest

pytest.importorskip("lm_eval", reason="lm-eval is optional (pip install lm-eval==0.4.13)")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402

from bertforge.errors import UserError  # noqa: E402
from bertforge.generation import SamplerConfig, sample  # noqa: E402
from bertforge.generation import lm_eval_adapter as adapter  # noqa: E402
from bertforge.generation.likelihood import ELBOConfig, elbo_loglikelihood  # noqa: E402


@pytest.fixture(scope="module")
def lm(modernbert_dir):
    return adapter.MDLMEvalLM.create_from_arg_string(
        f"pretrained={modernbert_dir},mc_num=8,mc_batch_size=4,max_new_tokens=8,block_length=4",
        {"batch_size": 2, "max_batch_size": None, "device": "cpu"})  # what lm-eval's CLI passes


def request(kind: str, *args) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=tuple(args), idx=0)


def test_registered_under_its_name():
    assert get_model("bertforge_mdlm") is adapter.MDLMEvalLM


def test_encode_pair_moves_trailing_spaces_and_splits_one_tokenization(lm):
    ctx, cont = lm.encode_pair("ROMEO: I will ", "go hence")
    whole = lm.tokenizer("ROMEO: I will go hence", add_special_tokens=False)["input_ids"]
    assert ctx[0] == lm.tokenizer.cls_token_id and ctx[1:] + cont == whole
    assert lm.tokenizer.decode(cont) == " go hence"


def test_loglikelihood_is_the_elbo_estimate(lm):
    (value, greedy), = lm.loglikelihood([request("loglikelihood", "ROMEO: I will", " go hence")])
    ctx, cont = lm.encode_pair("ROMEO: I will", " go hence")
    direct = elbo_loglikelihood(lm.model_fn, ctx, cont, mask_token_id=lm.mask_id, config=ELBOConfig(8, 4))
    assert value == pytest.approx(direct.value, abs=1e-9) and value < 0
    assert isinstance(greedy, bool)


def test_is_greedy_is_the_greedy_samplers_answer(lm):
    ctx = lm.encode_pair("ROMEO: I will", " go")[0]
    best = sample(lm.model_fn, [ctx], SamplerConfig(max_new_tokens=3, steps=3), mask_token_id=lm.mask_id,
                  pad_token_id=lm.pad_id).tokens[0].tolist()
    assert lm._is_greedy(ctx, best)
    assert not lm._is_greedy(ctx, best[:2] + [best[2] + 1])


def test_rolling_windows_score_every_token_once(lm, monkeypatch):
    scored = []
    monkeypatch.setattr(lm, "max_length", 6)
    monkeypatch.setattr(lm, "_score", lambda ctx, cont: scored.append((ctx, cont)) or -1.0)
    text = "ROMEO: I will go hence and stay no more tonight"
    total, = lm.loglikelihood_rolling([request("loglikelihood_rolling", text)])
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert [t for _, cont in scored for t in cont] == ids  # disjoint windows, in order, each token once
    assert all(len(c) + len(p) <= 6 for c, p in scored) and total == -len(scored)
    assert scored[0][0] == [lm.tokenizer.cls_token_id]


def test_generate_until_batches_and_cuts(lm):
    prompts = ["ROMEO: I will", "JULIET: O Romeo, Romeo", "Hi"]
    full = lm.generate_until([request("generate_until", p, {"until": []}) for p in prompts])
    lm.batch_size = 1
    try:
        alone = lm.generate_until([request("generate_until", p, {"until": []}) for p in prompts])
    finally:
        lm.batch_size = 2
    assert full == alone and all(isinstance(t, str) for t in full)  # batch of 2 + 1 == one at a time
    text = next(t for t in full if len(t) > 4)
    stop = text[2:4]
    cut, = lm.generate_until([request("generate_until", prompts[full.index(text)], {"until": [stop]})])
    assert cut == text.split(stop)[0] and len(cut) < len(text)


def test_bad_batch_size_is_one_line(modernbert_dir):
    with pytest.raises(UserError, match="--batch_size auto"):
        adapter.MDLMEvalLM(str(modernbert_dir), batch_size="auto")


def test_without_lm_eval_import_works_and_use_says_how_to_install(monkeypatch):
    for name in [m for m in sys.modules if m == "lm_eval" or m.startswith("lm_eval.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    spec = importlib.util.spec_from_file_location("adapter_without_lm_eval", adapter.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # importing needs no lm-eval
    with pytest.raises(UserError, match="pip install lm-eval==") as err:
        module.MDLMEvalLM("runs/x/hf")
    assert "\n" not in str(err.value)


def test_chat_template_renders_as_sft_data_was(lm, monkeypatch):
    """--apply_chat_template refused models whose SFT data used the plain alpaca template (their tokenizer has no
    template); it now renders that template, as generate.py --chat and chat.py do."""
    turn = [{"role": "user", "content": "Name a colour."}]
    monkeypatch.setattr(lm.tokenizer, "chat_template", None)
    assert lm.apply_chat_template(turn) == "### Instruction:\nName a colour.\n\n### Response:\n"
    assert lm.apply_chat_template(turn + [{"role": "assistant", "content": "Red"}], False).endswith(
        "### Response:\nRed")
    monkeypatch.setattr(lm.tokenizer, "chat_template", "{% for m in messages %}<{{ m['content'] }}>{% endfor %}")
    assert lm.apply_chat_template(turn) == "<Name a colour.>"
