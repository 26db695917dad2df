"""Command line of :mod:`bertforge.export`: ``hf``, ``sentence-transformers``, ``pylate`` and ``classifier``
subcommands."""

from __future__ import annotations

import argparse

from bertforge.cli import run_cli
from bertforge.errors import UserError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bertforge.export",
                                     description="Export a bertforge run to transformers, sentence-transformers or "
                                                 "PyLate, or a finetuned GLUE classifier to transformers.")
    sub = parser.add_subparsers(dest="format", required=True)
    source_help = "a bertforge run folder (config.yaml, checkpoints/) or, for st/pylate, a Hugging Face folder"
    hf = sub.add_parser("hf", help="a transformers folder (AutoModel, AutoModelForMaskedLM)")
    hf.add_argument("source", help="a bertforge run folder (config.yaml, checkpoints/)")
    hf.add_argument("--checkpoint", help="a checkpoint file or a sharded checkpoint's folder (default: the latest)")
    st = sub.add_parser("sentence-transformers", help="a SentenceTransformer folder (Transformer, Pooling, Normalize)")
    st.add_argument("source", help=source_help)
    st.add_argument("--pooling", choices=("mean", "cls"), help="mean over real tokens, or first token (default: a "
                    "sentence-transformers source's own, else mean)")
    st.add_argument("--normalize", action=argparse.BooleanOptionalAction, help="L2-normalise the embeddings "
                    "(default: as a sentence-transformers source does, else not)")
    st.add_argument("--max-seq-length", type=int, help="longest input in tokens (default: the tokenizer's)")
    colbert = sub.add_parser("pylate", help="a PyLate ColBERT folder (Transformer, projection)")
    colbert.add_argument("source", help=source_help)
    colbert.add_argument("--dim", type=int, help="token embedding size of the new projection (default: 128, or a "
                         "PyLate source's own)")
    colbert.add_argument("--document-length", type=int, help="tokens per document (default: PyLate's)")
    colbert.add_argument("--query-length", type=int, help="tokens per query (default: PyLate's)")
    cls = sub.add_parser("classifier", help="a finetuned GLUE classifier as a transformers folder "
                         "(AutoModelForSequenceClassification)")
    cls.add_argument("source", help="a GLUE job folder (jobs/<task>-seed<seed>-<key>/) or its model.pt")
    cls.add_argument("--glue-config", help="the sweep's YAML (default: the sweep's results.json)")
    cls.add_argument("--task", help="the GLUE task (default: the job's result.json)")
    for command in (hf, st, colbert, cls):
        command.add_argument("--out", required=True, help="output folder")
    return parser


def main(argv: list[str]) -> None:
    """Parse ``argv`` and export; print the output folder."""
    args = _parser().parse_args(argv)
    if args.format == "hf":
        from bertforge.export.source import export_run, is_run

        if not is_run(args.source):
            raise UserError(f"{args.source}: not a bertforge run folder (no config.yaml)")
        out = export_run(args.source, args.out, args.checkpoint)
    elif args.format == "sentence-transformers":
        from bertforge.export.sentence_transformers import save_sentence_transformer

        out = save_sentence_transformer(args.source, args.out, args.pooling, args.normalize, args.max_seq_length)
    elif args.format == "classifier":
        from bertforge.export.classifier import export_classifier

        out = export_classifier(args.source, args.out, args.glue_config, args.task)
    else:
        from bertforge.export.pylate import save_colbert

        out = save_colbert(args.source, args.out, args.dim, document_length=args.document_length,
                           query_length=args.query_length)
    print(out)


if __name__ == "__main__":
    run_cli(main)
