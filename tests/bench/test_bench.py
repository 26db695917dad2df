"""benchmark_fwd.py end to end on CPU: a tiny sweep's CSV, plot and table, OOM handling, user errors."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch

from bertforge.bench import runner
from bertforge.bench.cli import main
from bertforge.bench.report import COLUMNS
from bertforge.cli import run_cli
from tests.bench.conftest import FAST, TINY
from tests.conftest import QUICKSTART_YAML, REPO, SAMPLE_TEXT


def _read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_tiny_sweep_writes_csv_png_and_table(two_yamls, tmp_path, capsys):
    out = tmp_path / "bench"
    main(["--sweep", *two_yamls, *TINY, *FAST, "--seq-lens", "16,48", "--inputs", "fixed,variable",
          "--mode", "forward,train", "--out", str(out)])
    rows = _read_csv(out / "bench.csv")
    assert len(rows) == 2 * 2 * 2 * 2  # models x modes x lengths x input kinds
    assert tuple(rows[0]) == COLUMNS
    assert {r["model"] for r in rows} == {"hf-bert-tiny", "hf-bert-tiny-copy"}
    assert all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert float(r["ms_min"]) <= float(r["ms_median"]) <= float(r["ms_max"])
        assert float(r["tokens_per_s"]) > 0 and float(r["seqs_per_s"]) > 0 and r["peak_mem_mib"] != ""
        assert int(r["params"]) > int(r["params_nonembedding"]) > 0
        assert r["mfu"] == ""  # no known peak on CPU
    for r in rows:
        if r["inputs"] == "fixed":
            assert float(r["real_tokens_per_batch"]) == 4 * int(r["seq_len"]) == float(r["padded_tokens_per_batch"])
        else:  # real tokens only: variable batches have fewer real tokens than positions and than fixed ones
            assert float(r["real_tokens_per_batch"]) < float(r["padded_tokens_per_batch"])
            assert float(r["real_tokens_per_batch"]) < 4 * int(r["seq_len"])
    png = (out / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    printed = capsys.readouterr().out  # only the table: progress lines are log messages (stderr)
    assert printed.startswith("| model | mode | seq len |") and printed.count("| hf-bert-tiny") == 16
    assert printed.count("\n") == 16 + 2
    assert (out / "bench.md").read_text().count("\n") == 16 + 2


def test_oom_is_recorded_and_the_sweep_goes_on(two_yamls, tmp_path, monkeypatch):
    real_forward = runner.Case.forward

    def forward(self, batch):
        if batch.tensors["input_ids"].shape[1] >= 48:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake)")
        real_forward(self, batch)

    monkeypatch.setattr(runner.Case, "forward", forward)
    rows = main(["--sweep", *two_yamls, *TINY, *FAST, "--seq-lens", "16,48", "--inputs", "fixed",
                 "--out", str(tmp_path)])
    assert [(r["seq_len"], r["status"]) for r in rows] == [(16, "ok"), (48, "oom")] * 2
    csv_rows = _read_csv(tmp_path / "bench.csv")
    assert csv_rows[1]["status"] == "oom" and csv_rows[1]["ms_median"] == ""


def test_too_long_for_position_embeddings_is_skipped_with_a_hint(tmp_path):
    rows = main([str(QUICKSTART_YAML), *TINY, *FAST, "--seq-lens", "96", "--inputs", "fixed", "--out", str(tmp_path)])
    assert rows[0]["status"] == "too_long"
    assert "model.model_config.max_position_embeddings=96" in rows[0]["note"]


def test_batch_size_from_yaml_or_auto_and_corpus_lengths(tmp_path, caplog):
    fast = [a for a in FAST if a not in ("--batch-size", "4")]
    rows = main([str(QUICKSTART_YAML), *TINY, "device_train_microbatch_size=3", "max_seq_len=32", *fast,
                 "--length-dist", str(SAMPLE_TEXT), "--out", str(tmp_path)])
    assert [(r["seq_len"], r["inputs"], r["batch_size"]) for r in rows] == [(32, "fixed", 3), (32, "variable", 3)]
    notes = [r.getMessage() for r in caplog.records if r.name == "bertforge.bench.runner"]
    assert any("whitespace words x 1.3" in n for n in notes)  # quickstart has no tokenizer.name
    rows = main([str(QUICKSTART_YAML), *TINY, *fast, "--batch-size", "auto", "--max-batch-size", "2",
                 "--seq-lens", "16", "--inputs", "fixed", "--out", str(tmp_path)])
    assert rows[0]["batch_size"] == 2  # CPU: auto uses the cap


@pytest.mark.parametrize("argv, message", [
    (["nowhere.yaml"], "config file not found: nowhere.yaml"),
    ([str(QUICKSTART_YAML), "model.model_config.hidden_sizee=8"], "hidden_sizee: unknown key"),
    ([str(QUICKSTART_YAML), "--mode", "fwd"], "--mode: 'fwd' not understood"),
    ([str(QUICKSTART_YAML), str(QUICKSTART_YAML)], "pass --sweep"),
    ([str(QUICKSTART_YAML), "--length-dist", "zipf"], "--length-dist: 'zipf' is neither"),
    ([str(QUICKSTART_YAML), "--activation-checkpointing", "yes"], "--activation-checkpointing: 'yes' not understood"),
])
def test_user_errors_are_one_line_exit_2(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [*argv, *TINY, "--out", str(tmp_path), *FAST])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and err.count("\n") == 1


def test_checkpointing_and_compile_variants_side_by_side(tmp_path, capsys, monkeypatch):
    built, compiled = [], []
    real_build = runner.build_case

    def build_case(*args, **kwargs):
        case_and_more = real_build(*args, **kwargs)
        built.append(case_and_more[0].model)
        return case_and_more

    monkeypatch.setattr(runner, "build_case", build_case)
    monkeypatch.setattr(runner, "compile_as_composer", compiled.append)  # compiling itself: tests/models/test_compile
    rows = main([str(QUICKSTART_YAML), *TINY, *FAST, "--seq-lens", "16", "--inputs", "fixed", "--mode", "train",
                 "--activation-checkpointing", "off,on", "--compile", "off,on", "--out", str(tmp_path)])
    assert [(r["act_ckpt"], r["compiled"], r["status"]) for r in rows] == [
        ("off", "off", "ok"), ("off", "on", "ok"), ("on", "off", "ok"), ("on", "on", "ok")]
    assert len(compiled) == 2
    assert [model.model.is_gradient_checkpointing for model in built] == [False, False, True, True]
    assert [r["act_ckpt"] for r in _read_csv(tmp_path / "bench.csv")] == ["off", "off", "on", "on"]
    table, comparison = capsys.readouterr().out.split("\n\n")
    assert "| hf-bert-tiny +ckpt +compile | train | 16 |" in table
    lines = comparison.strip().splitlines()
    assert lines[0].startswith("| variant | mode |") and len(lines) == 2 + 3  # each variant against the plain run
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| hf-bert-tiny +compile", "| hf-bert-tiny +ckpt",
                                                         "| hf-bert-tiny +ckpt +compile"]
    assert comparison.strip() in (tmp_path / "bench.md").read_text()


def test_entry_point_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmark_fwd.py"), "nowhere.yaml"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "bertforge: error: config file not found: nowhere.yaml\n"


def test_one_rule_for_device_and_precision(monkeypatch):
    from composer.devices import DeviceCPU

    from bertforge import runtime
    from bertforge.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.device_name() == "cpu" and isinstance(runtime.composer_device(), DeviceCPU)
    with pytest.raises(ConfigError, match=r"^--device: 'gpu' was asked for but CUDA is not .*; use --device cpu$"):
        runtime.device_name("gpu", "--device")
    with pytest.raises(ConfigError, match=r"^device: .*; use device=cpu$"):
        runtime.pick_device(type("Cfg", (), {"device": "gpu"}))
    assert runtime.trainer_precision(None, on_gpu=False) == "fp32"
    with pytest.raises(ConfigError, match=r"^precision: amp_bf16 needs a GPU; use precision=fp32 on CPU$"):
        runtime.trainer_precision("amp_bf16", on_gpu=False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert runtime.default_precision(True) == "amp_bf16" == runtime.trainer_precision(None, on_gpu=True)
    assert runtime.default_precision(False) == "fp32"


def test_status_messages_go_through_logging_at_the_yaml_level(monkeypatch, capsys):
    import logging

    from bertforge.runtime import configure_logging

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # a plain script: Python logging not configured
    ours, logger = logging.getLogger("bertforge"), logging.getLogger("bertforge.bench.runner")
    try:
        configure_logging(None)  # python_log_level: null still shows INFO status lines
        logger.info("note: hello")
        assert capsys.readouterr().err == "[bertforge] note: hello\n"
        configure_logging("warning")
        logger.info("hidden")
        logger.warning("shown")
        err = capsys.readouterr().err
        assert "hidden" not in err and err.count("shown") == 1 and "WARNING: bertforge.bench.runner: shown" in err
    finally:  # leave the bertforge logger as other tests expect it: no handler of ours, level unset
        ours.handlers.clear()
        ours.setLevel(logging.NOTSET)
