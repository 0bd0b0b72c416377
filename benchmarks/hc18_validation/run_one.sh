#!/bin/bash
# Issue 13's validation runs: train on the first 128 IDs of HC18's train.list (16 labelled), test the final
# iteration on its last 32 (data/hc18_val: images/ and masks/ linked, train.list = first 128, test.list = last 32).
#   benchmarks/hc18_validation/run_one.sh NAME SCRIPT [flags...]      e.g. run_one.sh sup_bs2 train_supervised.py --batch_size 2
set -e
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
name=$1; script=$2; shift 2
python3 "$script" --root_path data/hc18_val --model_dir model/inv --exp "$name" --labelnum 16 --max_iterations 600 \
  --resize 128 192 --patch_size 128 192 --num_workers 0 --threads 1 --device cpu --save_every 200 "$@"
python3 test_LA.py --root_path data/hc18_val --model_dir model/inv --model "$name" --iteration 600 --threads 1 --device cpu
