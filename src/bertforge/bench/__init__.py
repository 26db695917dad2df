"""Forward and train-step benchmarks: throughput, memory and MFU per model, sequence length and input kind.

``flops`` holds the FLOPs accounting shared with the ``throughput_mfu`` training callback; ``inputs``
makes fixed- and variable-length batches; ``timing`` measures one case; ``runner`` walks a sweep;
``report`` writes the CSV, the plot and the markdown table; ``cli`` is ``benchmark_fwd.py``.
"""
