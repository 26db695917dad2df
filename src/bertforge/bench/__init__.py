"""Forward and train-step benchmarks: throughput, memory and MFU per model, sequence length and input kind.

FLOPs and parameters are counted by :mod:`bertforge.models.flops` and :mod:`bertforge.models.params`
(shared with training, where models supply ``flops_per_batch`` to Composer's SpeedMonitor). ``inputs``
makes fixed- and variable-length batches; ``timing`` measures one case; ``runner`` walks a sweep;
``report`` writes the CSV, the plot and the markdown table; ``cli`` is ``benchmark_fwd.py``.
"""
