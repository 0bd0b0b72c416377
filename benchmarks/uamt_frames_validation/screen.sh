#!/bin/bash
# UA-MT on CAMUS frames (issue 30, part 2): the 2D dropout, then lambda_max, decided on validation patients only.
# The rule is benchmarks/uamt_frames_validation/README.md's, written before any run. Data: data/CAMUS_val
# (benchmarks/camus_validation/make_root.py: the first 350 patients of CAMUS's train.list train, its last 50
# validate; CAMUS's test.list is never read here). Schedule and data flags: the camus arena's (S4000).
#
#   benchmarks/uamt_frames_validation/screen.sh dropout 1337              # stage (i), the screen: 4 candidates
#   DROPOUTS="today elem01" screen.sh dropout 1338 1339                   # stage (i), the confirmation
#   DROPOUT=elem01 screen.sh lambda 1337                                  # stage (ii), the screen: 0.1, 1, 10
#   DROPOUT=elem01 LAMBDAS="0.1 10" screen.sh lambda 1338 1339            # stage (ii), the confirmation
#
# A run whose kept results exist is skipped; an interrupted one resumes (--resume auto).
set -e
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
ROOT=data/CAMUS_val
MODELS=${MODELS:-model/uamt_frames_val}
KEPT=${KEPT:-results/uamt_frames_validation}
LIST=benchmarks/camus_validation/labelled_40.list
ITERATIONS=4000
[ -f "$ROOT/train.list" ] || python3 -m benchmarks.camus_validation.make_root

# The dropout candidates (networks/vnet.py DropoutSpec): name -> flags.
dropout_flags() {
  case $1 in
    today) echo "--dropout_where bottleneck+decoder --dropout_kind channel --dropout_rate 0.5" ;;  # the release's
    bneck) echo "--dropout_where bottleneck --dropout_kind channel --dropout_rate 0.5" ;;
    elem01) echo "--dropout_where decoder --dropout_kind element --dropout_rate 0.1" ;;
    elem02) echo "--dropout_where decoder --dropout_kind element --dropout_rate 0.2" ;;
    *) echo "unknown dropout candidate $1" >&2; exit 2 ;;
  esac
}

run() {  # NAME SCRIPT FLAGS...: train, test (none and lcc), mc_check, keep the small results
  local name=$1 script=$2
  shift 2
  [ -f "$KEPT/$name/mc_check.json" ] && return
  python3 "$script" --root_path "$ROOT" --model_dir "$MODELS" --exp "$name" --max_iterations "$ITERATIONS" \
    --lr_step $((ITERATIONS / 2)) --resize 112 112 --patch_size 112 112 --num_classes 4 --augment flip_lr \
    --group_by '^(patient\d+)_' --labelnum 40 --labeled_list "$LIST" --save_every 1000 --num_workers 0 \
    --threads 1 --device cpu --resume auto "$@"
  for post in none lcc; do
    python3 test_LA.py --root_path "$ROOT" --model_dir "$MODELS" --model "$name" --iteration "$ITERATIONS" \
      --stride_xy 32 --save_nifti 0 --threads 1 --device cpu --postprocess "$post"
  done
  mkdir -p "$KEPT/$name"
  cp "$MODELS/$name/run.json" "$KEPT/$name/"
  for test in "test_iter_$ITERATIONS" "test_iter_${ITERATIONS}_lcc"; do
    mkdir -p "$KEPT/$name/$test"
    cp "$MODELS/$name/$test/test.json" "$MODELS/$name/$test/metrics.csv" "$KEPT/$name/$test/"
  done
  # Last: its file marks the run as done. The 200 validation frames, 8 passes, dropout draws seeded.
  python3 -m tools.mc_check --checkpoint "$MODELS/$name/iter_$ITERATIONS.pth" --root_path "$ROOT" --split test \
    --passes 8 --seed 0 --stride_xy 32 --threads 1 --device cpu --out "$KEPT/$name/mc_check.json"
}

stage=$1
shift
for seed in "$@"; do
  case $stage in
    dropout)  # (i): supervised:40 with each dropout candidate
      for d in ${DROPOUTS:-today bneck elem01 elem02}; do
        # shellcheck disable=SC2046  # the flags are words
        run "drop_${d}_sup40_s$seed" train_supervised.py --seed "$seed" $(dropout_flags "$d")
      done
      ;;
    lambda)  # (ii): UA-MT-unlabel at 40 labelled frames, the arena's batch and ramp, with (i)'s dropout
      d=${DROPOUT:?set DROPOUT to the dropout stage (i) chose}
      for lam in ${LAMBDAS:-0.1 1 10}; do
        # shellcheck disable=SC2046
        run "lam${lam}_${d}_uamt40_s$seed" train_uamt_unlabel.py --seed "$seed" $(dropout_flags "$d") \
          --consistency "$lam" --batch_size 6 --labeled_bs 4 --student_batchnorm split \
          --rampup_epoch_iters $((ITERATIONS / 40)) --consistency_rampup 40
      done
      ;;
    *) echo "usage: $0 dropout|lambda SEED..." >&2; exit 2 ;;
  esac
done
