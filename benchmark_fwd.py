"""Forward / train-step throughput, memory and MFU per sequence length; see docs/benchmarks.md.

    python benchmark_fwd.py yamls/pretrain/hf-bert-base.yaml max_seq_len=2048 device_train_microbatch_size=16
    python benchmark_fwd.py --sweep a.yaml b.yaml --seq-lens 128,512,1024,2048 --inputs fixed,variable --out bench/
"""

from bertforge.bench.cli import main
from bertforge.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
