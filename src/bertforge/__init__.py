"""bertforge: a YAML-driven training framework for BERT-family encoders on MosaicML Composer."""

__version__ = "0.1.0"
