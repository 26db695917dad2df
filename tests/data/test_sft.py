"""SFT data: rendering of alpaca and chat records, field errors, convert --sft to MDS, and the ``sft`` collator."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from bertforge import registry
from bertforge.config.schema import DatasetConfig, LoaderConfig
from bertforge.data.convert import META_NAME, convert, main
from bertforge.data.sft import SFTEncoder, SFTOptions, read_sft_file, to_messages
from bertforge.data.text import build_text_dataloader
from bertforge.errors import ConfigError, UserError
from tests.conftest import SHARED_DATA

TOKENIZER = SHARED_DATA / "tokenizers" / "bert-base-uncased"
TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} [SEP]{% endfor %}"
            "{% if add_generation_prompt %}<assistant> {% endif %}")
ALPACA = [{"instruction": "Add the two numbers.", "input": "2 and 3", "output": "The sum is 5."},
          {"instruction": "Name a colour.", "input": "", "output": "Blue."}]
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Name a fruit"},
        {"role": "assistant", "content": "An apple."}]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(str(TOKENIZER))


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def encoder(tok, max_seq_len: int = 128, **kw) -> SFTEncoder:
    return SFTEncoder(tok, SFTOptions(max_seq_len, **kw))


def test_alpaca_renders_with_the_plain_template(tok):
    enc = encoder(tok)
    with_input, without_input = (to_messages(r, "r") for r in ALPACA)
    assert enc.prompt_text(with_input[:-1]) == ("### Instruction:\nAdd the two numbers.\n\n### Input:\n2 and 3\n\n"
                                               "### Response:\n")
    assert enc.prompt_text(without_input[:-1]) == "### Instruction:\nName a colour.\n\n### Response:\n"
    ex = enc([with_input])[0]
    prompt = [tok.cls_token_id] + ids(tok, enc.prompt_text(with_input[:-1]))
    assert ex.input_ids.dtype == np.int32 and ex.prompt_len == len(prompt) and not ex.truncated
    assert ex.input_ids.tolist() == prompt + ids(tok, "The sum is 5.") + [tok.sep_token_id]
    assert enc.prompt_ids(with_input[:-1]) == prompt  # what a sampler feeds at generation time


def test_messages_render_with_plain_and_chat_templates(tok, tmp_path):
    plain = encoder(tok)([CHAT])[0]
    prompt = "Be brief.\n\n### Instruction:\nHi there\n\n### Response:\nHello.\n\n### Instruction:\nName a fruit\n\n"
    assert plain.input_ids.tolist() == ([tok.cls_token_id] + ids(tok, prompt + "### Response:\n")
                                        + ids(tok, "An apple.") + [tok.sep_token_id])
    template_file = tmp_path / "chat.jinja"
    template_file.write_text(TEMPLATE)
    templated = AutoTokenizer.from_pretrained(str(TOKENIZER))
    templated.chat_template = TEMPLATE
    from_file, own = encoder(tok, chat_template=str(template_file)), encoder(templated)
    assert (from_file.describe(), own.describe(), encoder(templated, chat_template="plain").describe()) == (
        str(template_file), "tokenizer", "plain")
    ex = from_file([CHAT])[0]
    assert ex.input_ids.tolist() == own([CHAT])[0].input_ids.tolist()
    head = "<system> Be brief. [SEP]<user> Hi there [SEP]<assistant> Hello. [SEP]<user> Name a fruit [SEP]<assistant> "
    # the template already ends the answer with [SEP]: no second end marker
    assert ex.input_ids.tolist() == [tok.cls_token_id] + ids(tok, head) + ids(tok, "An apple. [SEP]")
    assert ex.prompt_len == 1 + len(ids(tok, head))


def test_end_marker_option_and_unknown_marker(tok):
    ex = encoder(tok, end_marker="[PAD]")([to_messages(ALPACA[1], "r")])[0]
    assert ex.input_ids[-1] == tok.pad_token_id
    with pytest.raises(UserError, match=r"^--end-marker <eoa>: not a token of this tokenizer"):
        encoder(tok, end_marker="<eoa>")


def test_long_prompts_are_dropped_and_long_answers_cut_without_end_marker(tok):
    enc = encoder(tok, max_seq_len=8)
    assert enc.encode([5] * 7, [9]) is None  # [CLS] + 7 prompt tokens fill all 8
    fits = enc.encode([5] * 3, [9, 9])
    assert fits.input_ids.tolist() == [tok.cls_token_id, 5, 5, 5, 9, 9, tok.sep_token_id] and not fits.truncated
    cut = enc.encode([5] * 3, [9] * 6)
    assert cut.input_ids.tolist() == [tok.cls_token_id, 5, 5, 5, 9, 9, 9, 9] and cut.truncated
    exact = enc.encode([5] * 3, [9] * 3)  # 4 + 3 + end marker = 8: fits whole
    assert exact.input_ids[-1] == tok.sep_token_id and not exact.truncated
    strict = encoder(tok, max_seq_len=8, long_answers="drop")
    assert strict.encode([5] * 3, [9] * 4) is None and strict.encode([5] * 3, [9] * 3).input_ids[-1] == tok.sep_token_id


@pytest.mark.parametrize(("content", "message"), [
    (json.dumps([ALPACA[0], {"instruction": "x", "input": ""}]), r"record 1: missing field 'output' \(found: "
     r"instruction, input\)"),
    (json.dumps(ALPACA[0]) + "\n\n" + json.dumps({"input": "y", "output": "z"}) + "\n",
     r"record 1 \(line 3\): missing field 'instruction'"),
    (json.dumps([{"messages": [{"role": "user", "content": "q"}]}]), r"record 0: the last message is 'user'; it "
     "must be the assistant's answer"),
    (json.dumps([{"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}]),
     r"record 0: messages\[0\]: missing field 'content'"),
    (json.dumps([{"instruction": "q", "output": 3}]), r"record 0: field 'output' is int, expected a string"),
])
def test_bad_records_fail_with_one_line_naming_file_record_and_field(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=rf"^{path}: {message}") as err:
        list(read_sft_file(path))
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=rf"^{path}: {message}"):  # the converter reads them before writing
        convert(path, tmp_path / "out", tokenizer=str(TOKENIZER), splits="train", sft=SFTOptions(64))
    assert not (tmp_path / "out" / "train").exists()


def test_convert_sft_writes_ids_and_prompt_lengths(tok, tmp_path, caplog):
    records = [dict(r, output=f"{r['output']} {i}") for i, r in enumerate(ALPACA * 10)]
    records[3]["instruction"] = "word " * 60  # a prompt longer than max_seq_len: dropped
    records[4]["output"] = "many words " * 30  # cut to fit
    path = tmp_path / "alpaca.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "mds"
    with caplog.at_level(logging.WARNING, logger="bertforge.data.sft"):
        meta = main(["--input", str(path), "--out", str(out), "--tokenizer", str(TOKENIZER), "--sft",
                     "--max-seq-len", "48", "--splits", "train", "--num-workers", "2"])
    assert "dropped 1 examples whose prompt alone has 48 tokens" in caplog.text
    assert meta["format"] == "sft" and meta["splits"] == {"train": 19}
    assert meta["sft"] == {"chat_template": "plain", "template_text": None, "unknown_answer_share": 0.0,
                           "end_marker_id": tok.sep_token_id, "max_seq_len": 48, "long_answers": "cut",
                           "dropped": 1, "truncated_responses": 1}
    assert "cannot write" not in caplog.text
    assert json.loads((out / META_NAME).read_text()) == meta
    from streaming import LocalDataset

    written = LocalDataset(str(out), "train")
    expected = [e for e in encoder(tok, max_seq_len=48)([to_messages(r, "r") for r in records]) if e is not None]
    assert len(written) == len(expected) == 19
    for i, ex in enumerate(expected):
        assert written[i]["input_ids"].dtype == np.int32
        assert written[i]["input_ids"].tolist() == ex.input_ids.tolist() and written[i]["prompt_len"] == ex.prompt_len
    assert max(len(written[i]["input_ids"]) for i in range(19)) == 48


def test_convert_sft_reads_a_saved_chat_dataset(tok, tmp_path):
    from datasets import Dataset

    Dataset.from_list([{"messages": CHAT}] * 3).save_to_disk(str(tmp_path / "chat"))
    meta = convert(tmp_path / "chat", tmp_path / "mds", tokenizer=str(TOKENIZER), splits="train",
                   sft=SFTOptions(64))
    from streaming import LocalDataset

    expected = encoder(tok, 64)([CHAT])[0]
    assert meta["splits"] == {"train": 3}
    assert LocalDataset(str(tmp_path / "mds"), "train")[2]["input_ids"].tolist() == expected.input_ids.tolist()


def test_cli_sft_options_need_each_other(tmp_path):
    base = ["--input", str(tmp_path), "--out", str(tmp_path / "o")]
    with pytest.raises(UserError, match=r"^--max-seq-len: only applies with --sft"):
        main([*base, "--max-seq-len", "64"])
    with pytest.raises(UserError, match=r"^--sft: needs --max-seq-len N"):
        main([*base, "--sft", "--tokenizer", str(TOKENIZER)])
    with pytest.raises(UserError, match=r"^--sft: needs --tokenizer"):
        convert(tmp_path, tmp_path / "o", sft=SFTOptions(64))


# --------------------------------------------------------------------------------------------- collator
SAMPLES = [{"input_ids": [2, 5, 6, 7, 8, 9, 10, 3], "prompt_len": 4, "pad_to": 16},
           {"input_ids": [2, 11, 12, 13, 3], "prompt_len": 2, "pad_to": 16}]


@pytest.fixture(scope="module")
def small_tok(tmp_path_factory):
    """A WordPiece tokenizer of 5 special tokens ([PAD]=0 ... [MASK]=4) and 40 words."""
    from transformers import BertTokenizerFast

    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(40)]) + "\n")
    return BertTokenizerFast(str(vocab))  # positional: vocab_file in transformers 4, vocab in 5


def build(small_tok, deterministic: bool, **kw):
    return registry.collators.build({"name": "sft", **kw}, "train_loader.collator", small_tok, 0.15, deterministic)


def test_sft_collator_masks_answers_and_padding_never_prompts(small_tok):
    collate = build(small_tok, False)
    original = torch.zeros(2, 16, dtype=torch.long)
    original[0, :8], original[1, :5] = torch.tensor(SAMPLES[0]["input_ids"]), torch.tensor(SAMPLES[1]["input_ids"])
    maskable = torch.arange(16)[None, :] >= torch.tensor([[4], [2]])
    seen = torch.zeros(2, 16, dtype=torch.long)
    for seed in range(100):  # a position is missed in all 100 with probability ~2**-100
        torch.manual_seed(seed)
        batch = collate(SAMPLES)
        masked = batch["labels"] != -100
        assert torch.equal(batch["attention_mask"], torch.ones(2, 16, dtype=torch.long))
        assert torch.equal(batch["mdlm_maskable"], maskable) and not (masked & ~maskable).any()
        assert torch.equal(batch["labels"][masked], original[masked]) and (batch["input_ids"][masked] == 4).all()
        assert torch.equal(batch["input_ids"][~masked], original[~masked])
        assert torch.allclose(batch["mdlm_weight"], 1 / batch["mdlm_t"])  # linear schedule, inverse_t weighting
        seen += masked
    assert (seen[maskable] > 0).all()  # every answer token, end marker and trailing [PAD] gets masked sometimes
    assert (seen[~maskable] == 0).all()


def test_sft_collator_eval_masks_depend_only_on_the_batch(small_tok):
    collate, train = build(small_tok, True), build(small_tok, False)
    torch.manual_seed(0)
    first = collate(SAMPLES)
    torch.manual_seed(1)
    second = collate(SAMPLES)
    assert all(torch.equal(first[k], second[k]) for k in first)
    torch.manual_seed(0)
    a = train(SAMPLES)
    torch.manual_seed(1)
    assert not torch.equal(a["labels"], train(SAMPLES)["labels"])
    no_pad_to = collate([{k: v for k, v in s.items() if k != "pad_to"} for s in SAMPLES])
    assert no_pad_to["input_ids"].shape == (2, 8)  # without pad_to: the longest sample


def test_sft_collator_refuses_plain_text_samples_and_checks_options(small_tok):
    with pytest.raises(UserError, match=r"^collator 'sft': samples have no prompt_len; convert the data with"):
        build(small_tok, False)([{"input_ids": [2, 5, 3]}])
    with pytest.raises(ConfigError, match="eps"):
        build(small_tok, False, eps=0.0)


def test_loader_streams_sft_shards_padded_to_max_seq_len(tok, tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(ALPACA * 4))
    convert(path, tmp_path / "mds", tokenizer=str(TOKENIZER), splits="train", sft=SFTOptions(40))
    loader_cfg = LoaderConfig(DatasetConfig(local=str(tmp_path / "mds"), split="train"), collator={"name": "sft"})
    loader = build_text_dataloader(loader_cfg, tok, max_seq_len=40, batch_size=8, seed=0, train=False)
    batch = next(iter(loader))
    examples = [encoder(tok)([to_messages(r, "r")])[0] for r in ALPACA]
    assert batch["input_ids"].shape == (8, 40) and set(batch) >= {"mdlm_t", "mdlm_maskable", "mdlm_weight"}
    assert max(len(e.input_ids) for e in examples) < 40  # so every row ends with [PAD]s, maskable like the answer
    assert set((~batch["mdlm_maskable"]).sum(1).tolist()) == {e.prompt_len for e in examples}
    assert batch["mdlm_maskable"][:, -1].all() and (batch["labels"][~batch["mdlm_maskable"]] == -100).all()


def test_quickstart_sft_yaml_validates():
    from bertforge.config import load_config
    from tests.conftest import REPO

    cfg = load_config(REPO / "yamls" / "generative" / "quickstart-sft.yaml")
    assert cfg.train_loader.collator["name"] == cfg.eval_loader.collator["name"] == "sft"
    assert registry.collators.validate(cfg.train_loader.collator, "train_loader.collator") == {
        "schedule": "linear", "weighting": "inverse_t"}
    mdlm = load_config(REPO / "yamls" / "generative" / "quickstart-mdlm.yaml")
    assert cfg.model == mdlm.model and cfg.max_seq_len == mdlm.max_seq_len == 128  # its checkpoint loads here
    assert cfg.tokenizer == mdlm.tokenizer  # and its ids mean the same
    registry.models.validate(cfg.model, "model")


def test_the_run_tokenizer_prompts_as_the_sft_data_was_rendered(tok, tmp_path):
    """Before: data rendered with a template file trained a model whose tokenizer had none, so chat.py prompted it
    with the plain template. The template text travels in bertforge_meta.json (the file may be gone)."""
    from bertforge.config import load_config
    from bertforge.data.sft import carry_chat_template
    from bertforge.train import build_tokenizer
    from tests.conftest import REPO

    template = tmp_path / "chat.jinja"
    template.write_text(TEMPLATE)
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(ALPACA * 4))
    mds = tmp_path / "mds"
    convert(path, mds, tokenizer=str(TOKENIZER), splits="train", sft=SFTOptions(64, chat_template=str(template)))
    trained = encoder(tok, 64, chat_template=str(template)).prompt_ids([to_messages(ALPACA[0], "r")[0]])
    template.unlink()
    cfg = load_config(REPO / "yamls" / "generative" / "quickstart-sft.yaml",
                      [f"run_dir={tmp_path / 'run'}", f"tokenizer.name={TOKENIZER}",
                       f"train_loader.dataset.local={mds}", "eval_loader=null"])
    run_tok = build_tokenizer(cfg)
    assert run_tok.chat_template == TEMPLATE
    assert encoder(run_tok, 64).prompt_ids([to_messages(ALPACA[0], "r")[0]]) == trained  # chat.py's 'auto'

    plain = json.loads((mds / META_NAME).read_text()) | {"sft": {"chat_template": "plain", "template_text": None}}
    carry_chat_template(run_tok, [("plain-data", plain)])
    assert run_tok.chat_template is None  # trained on the plain template: the tokenizer's own is not used
    with pytest.raises(UserError, match=r"^train_loader: the SFT sources a, b were rendered with different chat "):
        carry_chat_template(run_tok, [("a", plain), ("b", json.loads((mds / META_NAME).read_text()))])


def test_a_tokenizer_that_cannot_write_the_data_is_reported(tiny_wordpiece, tmp_path, caplog):
    """Before: the SFT quickstart's Shakespeare tokenizer wrote '###' and digits as [UNK] without a word, and the
    model learned to answer with [UNK] runs. Now the conversion says so and records the share."""
    folder = tmp_path / "tiny-tokenizer"
    tiny_wordpiece.save_pretrained(folder)
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([{"instruction": "w1 w2", "output": "w3 w4 w5 9"}] * 3))
    with caplog.at_level(logging.WARNING, logger="bertforge.data.sft"):
        meta = convert(path, tmp_path / "mds", tokenizer=str(folder), splits="train", sft=SFTOptions(40))
    assert meta["sft"]["unknown_answer_share"] == 0.2  # '9' of 'w3 w4 w5 9 [SEP]'
    assert "sft: 20.0% of answer tokens are [UNK]" in caplog.text
    assert "the chat template's own text ('### Instruction:" in caplog.text  # '#' and ':' are not in its vocabulary
