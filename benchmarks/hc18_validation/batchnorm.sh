#!/bin/bash
# Issue 13's next suspect: the unlabelled items in the student's BatchNorm batch. Three runs per seed, validation
# frames only, the HC18 table's lr schedule (x0.1 every 250 of 600 iterations) so that the final iteration is not a
# point of a run still moving at lr 0.01:
#   sup_bs4   supervised, 4 labelled items a batch
#   c0_joint  UA-MT-unlabel with lambda = 0: the same 4 labelled + 2 unlabelled items in one student forward
#             (BatchNorm statistics over all 6; no consistency gradient, so only BatchNorm sees the unlabelled items)
#   c0_split  the same with --student_batchnorm split (labelled and unlabelled items as two forwards)
# --mc_passes 2: with lambda = 0 the teacher's passes do not reach the student; fewer of them only save time.
# A run whose test.json exists is skipped.   benchmarks/hc18_validation/batchnorm.sh 1337 1338 1339
set -e
cd "$(dirname "$0")/../.."
run() {  # NAME SCRIPT FLAGS...
  [ -f "model/inv/$1/test_iter_600/test.json" ] || benchmarks/hc18_validation/run_one.sh "$@"
}
for seed in "$@"; do
  common=(--seed "$seed" --lr_step 250)
  uamt=(--batch_size 6 --labeled_bs 4 --consistency 0 --mc_passes 2)
  run "bn_sup_bs4_s$seed" train_supervised.py "${common[@]}"
  run "bn_c0_joint_s$seed" train_uamt_unlabel.py "${common[@]}" "${uamt[@]}" --student_batchnorm joint
  run "bn_c0_split_s$seed" train_uamt_unlabel.py "${common[@]}" "${uamt[@]}" --student_batchnorm split
done
