"""Bad input is one clear line; the command line and the sample-logging callback work end to end."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch

from bertforge import registry
from bertforge.cli import run_cli
from bertforge.errors import ConfigError, UserError
from bertforge.generation import SamplerConfig, TextGenerator, load_masked_lm, sample
from bertforge.generation.cli import main


@pytest.mark.parametrize("kwargs, key, words", [
    (dict(max_new_tokens=64, block_length=10), "block_length", "does not divide max_new_tokens 64"),
    (dict(max_new_tokens=64, block_length=8, steps=4), "steps", "fewer than the 8 blocks"),
    (dict(remasking="lowest"), "remasking", "choose one of low_confidence, margin, random"),
    (dict(temperature=-1.0), "temperature", "must be >= 0"),
    (dict(threshold=1.5), "threshold", "(0, 1]"),
])
def test_bad_settings_name_the_key(kwargs, key, words):
    with pytest.raises(ConfigError, match=key) as err:
        SamplerConfig(**kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_prompt_longer_than_the_model_is_one_line():
    with pytest.raises(UserError, match=r"prompt of 120 tokens \+ max_new_tokens 16 = 136 exceeds the model's "
                                        r"max length 128"):
        sample(lambda i, m: None, [[5] * 120], SamplerConfig(max_new_tokens=16), mask_token_id=1, pad_token_id=0,
               max_length=128)


def test_tokenizer_without_mask_token_is_refused(bert_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bert_dir)
    tok.mask_token = None
    tok.save_pretrained(tmp_path)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(bert_dir / name, tmp_path / name)
    with pytest.raises(UserError, match="the tokenizer has no mask token") as err:
        load_masked_lm(str(tmp_path))
    assert str(tmp_path) in str(err.value)


def test_cli_generates_and_reports(bert_dir, capsys):
    answers = main([str(bert_dir), "--prompt", "romeo :", "--prompt", "to be", "--max-new-tokens", "8",
                    "--steps", "4", "--block-length", "4", "--no-stop"])
    out = capsys.readouterr().out
    assert len(answers) == 2 and all(a for a in answers)
    assert out.startswith(f"romeo : {answers[0]}") and "16 answer tokens, 4 forward passes" in out


@pytest.mark.parametrize("argv, message", [
    (["--block-length", "3"], "bertforge: error: --block-length: 3 does not divide max_new_tokens 8"),
    (["--steps", "1", "--block-length", "4"], "bertforge: error: --steps: 1 is fewer than the 2 blocks"),
    (["--max-new-tokens", "200"], "exceeds the model's max length 128"),
])
def test_cli_bad_input_is_one_line_exit_2(bert_dir, capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        run_cli(main, [str(bert_dir), "--prompt", "hi", "--max-new-tokens", "8", *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and err.count("\n") == 1


def test_missing_folder_is_one_line(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        TextGenerator.from_pretrained(str(tmp_path / "nope"))


def test_generate_samples_callback_logs_and_restores_train_mode(bert_dir):
    from composer.core import Precision

    from bertforge.models.composer import MaskedLMComposerModel

    model, tok = load_masked_lm(str(bert_dir))
    composer_model = MaskedLMComposerModel(model.train(), tok)  # a ComposerModel holding .model and .tokenizer
    callback = registry.callbacks.build({"name": "generate_samples", "prompts": ["romeo :", "to be"],
                                         "interval": 2, "max_new_tokens": 8, "steps": 4}, "callbacks[0]")
    traces = []
    logger = SimpleNamespace(log_traces=traces.append)
    state = SimpleNamespace(model=composer_model, precision=Precision.FP32,
                            timestamp=SimpleNamespace(batch=3))
    callback.batch_end(state, logger)  # batch 3: not a multiple of 2
    assert traces == []
    state.timestamp.batch = 4
    callback.batch_end(state, logger)
    callback.fit_end(state, logger)
    assert len(traces) == 2 and set(traces[0]) == {"samples/0", "samples/1"}
    assert traces[0] == traces[1] and traces[0]["samples/0"].startswith("romeo : ")  # greedy: same weights, same text
    assert model.training and torch.is_grad_enabled()


def test_chat_answers_stop_at_the_sft_end_marker_too(monkeypatch):
    """SFT ends answers with sep when the tokenizer has one (data/sft.py); generate.py's default stop is eos first.
    With both tokens, a chat prompt stops at either (before: only eos, so an SFT answer ran past its marker)."""
    from transformers import AutoTokenizer

    from bertforge.generation import text
    from tests.conftest import SHARED_DATA

    tok = AutoTokenizer.from_pretrained(SHARED_DATA / "tokenizers" / "bert-base-uncased")
    tok.eos_token = "[unused1]"
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    seen = {}
    monkeypatch.setattr(text, "sample", lambda fn, ids, config, **kw: seen.update(kw))
    generator = TextGenerator(lambda ids, mask: None, tok)
    generator.run(["hi"], SamplerConfig(max_new_tokens=4, steps=4, block_length=4), chat=True)
    assert set(seen["end_token_ids"]) == {tok.eos_token_id, tok.sep_token_id}
    generator.run(["hi"], SamplerConfig(max_new_tokens=4, steps=4, block_length=4))
    assert seen["end_token_ids"] == [tok.eos_token_id]  # plain text: as before


def test_chat_prompts_render_as_sft_data_without_a_template_did():
    """SFT data rendered with the plain alpaca template leaves the run tokenizer without a chat template
    (data/sft.carry_chat_template); `generate.py --chat` on that model refused ("no chat template") while chat.py
    answered. Both now render the prompt exactly as the training data did."""
    from transformers import AutoTokenizer

    from bertforge.data.sft import SFTEncoder, SFTOptions, to_messages
    from bertforge.generation import encode_prompt
    from tests.conftest import SHARED_DATA

    tok = AutoTokenizer.from_pretrained(SHARED_DATA / "tokenizers" / "bert-base-uncased")
    assert not tok.chat_template
    record = {"instruction": "Name three colours.", "output": "red, green and blue"}
    example = SFTEncoder(tok, SFTOptions(64))([to_messages(record, "r")])[0]  # as convert_dataset.py --sft writes
    ids = encode_prompt(tok, record["instruction"], chat=True)
    assert ids == example.input_ids[:example.prompt_len].tolist()  # the training prompt, token for token
    assert tok.decode(ids).startswith("[CLS] # # # instruction : name three colours.")
    assert tok.decode(ids).endswith("# # # response :")
    tok.chat_template = "{% for m in messages %}<{{ m['content'] }}>{% endfor %}"
    assert tok.decode(encode_prompt(tok, "hi", chat=True)) == "[CLS] < hi >"  # its own template when it has one
