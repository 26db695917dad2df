"""``python -m bertforge.convert``: bring published weights in as bertforge runs, and write runs back out.

Subcommands: ``m2-original`` (the original M2-BERT's weights + config.json -> a run folder) and
``to-m2-original`` (a ``m2_bert`` run -> the original's pytorch_model.bin + config.json).
"""
