"""A checkpoint folder in the layout dllm publishes for BERT-Chat (ModernBertForMaskedLM + the ModernBERT tokenizer
with eos = bos = [PAD], a [Question]/[Answer] chat template inside tokenizer_config.json) loads, and the chat and
generate paths decode exactly max_new_tokens tokens from it."""

from __future__ import annotations

import json

import pytest
import torch

from bertforge.generation import SamplerConfig, TextGenerator, end_token_ids, load_masked_lm
from bertforge.generation import chat as chat_mod
from tests.conftest import REPO
from tests.generation.conftest import save_tiny

# the conversation format of dllm's BERT chat models, written out here
TEMPLATE = ("{% for m in messages %}"
            "{% if m['role'] == 'system' %}[SYS]\n{{ m['content'] | trim }}\n[/SYS]\n\n"
            "{% elif m['role'] == 'user' %}[Question]\n{{ m['content'] | trim }}\n[/Question]\n\n"
            "{% else %}[Answer]\n{{ m['content'] | trim }}\n[/Answer]\n\n{% endif %}"
            "{% endfor %}"
            "{% if add_generation_prompt %}[Answer]\n{% endif %}")


@pytest.fixture(scope="module")
def dllm_dir(tmp_path_factory):
    folder = save_tiny(tmp_path_factory.mktemp("dllm-bert-chat"), "modernbert")
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.update(chat_template=TEMPLATE, eos_token="[PAD]", bos_token="[PAD]")  # dllm: eos = bos = pad
    config_path.write_text(json.dumps(config))
    (folder / "chat_template.jinja").unlink(missing_ok=True)  # the template lives in tokenizer_config only
    return folder


def test_loads_with_its_mask_template_and_end_token(dllm_dir):
    model, tok = load_masked_lm(str(dllm_dir))
    assert type(model).__name__ == "ModernBertForMaskedLM"
    assert tok.mask_token == "[MASK]" and tok.chat_template == TEMPLATE
    assert end_token_ids(tok) == [tok.pad_token_id]  # answers end where the padding starts, as dllm trains them


def test_generate_chat_commits_exactly_max_new_tokens(dllm_dir):
    gen = TextGenerator.from_pretrained(str(dllm_dir))
    config = SamplerConfig(max_new_tokens=8, steps=8, block_length=4)
    out = gen.run(["Name a colour.", "Say hi"], config, chat=True, end_tokens=[])
    assert out.tokens.shape == (2, 8) and out.forward_passes == 8
    assert (out.tokens != gen.tokenizer.mask_token_id).all()
    for row in out.commit_step:  # one token a step, block 0 in steps 0-3, block 1 in steps 4-7
        assert sorted(row.tolist()) == list(range(8)) and set(row[:4].tolist()) == {0, 1, 2, 3}
    prompt = gen.tokenizer.decode(gen.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Say hi"}], add_generation_prompt=True, tokenize=True))
    assert prompt.endswith("[/Question]\n\n[Answer]\n")


def test_chat_session_renders_the_template_and_fills_the_canvas(dllm_dir, monkeypatch):
    gen = TextGenerator.from_pretrained(str(dllm_dir))
    seen = []

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append((args[1], out))
        return out

    real = chat_mod.sample
    monkeypatch.setattr(chat_mod, "sample", recording)
    session = chat_mod.ChatSession(gen, SamplerConfig(max_new_tokens=8, steps=8, block_length=4))
    answer = session.reply("Name a colour.")
    (prompts, out), = seen
    assert gen.tokenizer.decode(prompts[0]).endswith("[Question]\nName a colour.\n[/Question]\n\n[Answer]\n")
    filled = (out.commit_step[0] >= 0) | (out.tokens[0] == session.pad_id)  # committed, or padding after the end
    assert filled.all() and (out.tokens != gen.tokenizer.mask_token_id).all()
    assert isinstance(answer, str) and session.messages[-1] == {"role": "assistant", "content": answer}
    assert torch.equal(out.tokens[0][out.commit_step[0] >= 0], out.tokens[0][:int((out.commit_step[0] >= 0).sum())])


def test_chat_ends_at_pad_and_cuts_the_closing_tag(dllm_dir, monkeypatch):
    """dllm's answers end in [PAD] (eos = pad) right after a literal [/Answer]: the session stops at the pad and
    the answer text stops before the tag."""
    gen = TextGenerator.from_pretrained(str(dllm_dir))
    assert chat_mod.closing_text(gen.tokenizer) == "[/Answer]"
    session = chat_mod.ChatSession(gen, SamplerConfig(max_new_tokens=8, steps=8, block_length=4))
    assert gen.tokenizer.pad_token_id in session.end_ids
    monkeypatch.setattr(TextGenerator, "decode", lambda self, out: ["Blue.\n[/Answer]\n"])
    assert session.reply("Name a colour.") == "Blue."


def test_shipped_bert_chat_template_renders_the_dllm_format(dllm_dir):
    """yamls/generative/templates/bert-chat.jinja (for the ModernBERT-large SFT recipe) renders conversations
    exactly as the dllm format above, through transformers' own template engine."""
    tok = TextGenerator.from_pretrained(str(dllm_dir)).tokenizer
    shipped = (REPO / "yamls" / "generative" / "templates" / "bert-chat.jinja").read_text()
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Hi "},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Colour?"}]
    for prompt in (True, False):
        assert (tok.apply_chat_template(chat, chat_template=shipped, tokenize=False, add_generation_prompt=prompt)
                == tok.apply_chat_template(chat, chat_template=TEMPLATE, tokenize=False, add_generation_prompt=prompt))
