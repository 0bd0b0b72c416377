"""The arenas' results tables as data: each config's data, patch and schedule (Scale), the rows (GROUPS: method,
labelled count, flags), which rows each config runs, the paired tests and the gap each table reports, and how the
tables name each row. tools/run_table.py trains, tests and summarises them; nothing here runs anything.

Every choice below was decided before its runs (RESULTS.md says where and on what validation); a change to a row that
has results in results/<config>/ changes what those results mean: add a row instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Schedule:
    """A run's own schedule in a config, where it differs from the config's (e.g. a method in two stages)."""

    iterations: int
    lr_step: int
    flags: tuple[str, ...] = ()  # e.g. the stage split and the batch


@dataclass(frozen=True)
class Scale:
    root: str
    patch: tuple[int, ...]  # 3 sides for volumes, ROWS COLS for 2D
    iterations: int
    lr_step: int  # the release's 2500 of 6000, scaled
    rampup_epoch_iters: int  # iterations per ramp-up "epoch" of lambda(t) (the release's 150)
    consistency_rampup: float  # lambda(t)'s ramp in those epochs (the release's 40: the maximum at the end)
    stride_xy: int
    stride_z: int
    save_every: int
    # (run name, schedule): runs whose run.json method (<method>[_<variant>]) is listed train on their own schedule.
    # A variant listed for some config but not this one has no schedule here and is refused.
    schedules: tuple[tuple[str, Schedule], ...] = ()
    data_flags: tuple[str, ...] = ()  # e.g. 2D --resize, given to every training script (test reads run.json)
    method_flags: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (method, flags): given to that method's runs only
    labeled_lists: tuple[tuple[int, str], ...] = ()  # (labelled count, --labeled_list file): instead of the first N
    # test_LA.py --postprocess of every run: "none" (the papers' protocol), and "lcc" too where the 2D tables report
    # both (its own tests, kept and summarised beside the plain ones: table_lcc.md)
    postprocess: tuple[str, ...] = ("none",)


# 4 labelled + 2 unlabelled items a step: the supervised batch's labelled items plus 2 to learn from
BATCH_4PLUS2 = ("--batch_size", "6", "--labeled_bs", "4")
CAMUS_GROUP_BY = r"^(patient\d+)_"  # CAMUS IDs: patient0001_2CH_ED (benchmarks/camus_validation/make_root.py)


BUSI_GROUP_BY = r"^(g\d+)_"  # BUSI IDs: g000_benign_001, a group of near-duplicate frames


def bcp_stages(pre_iterations: int, batch_size: int, labeled_bs: int) -> tuple[str, ...]:
    return ("--pre_iterations", str(pre_iterations), "--batch_size", str(batch_size), "--labeled_bs", str(labeled_bs))


# fmt: off
CONFIGS = {
    # The paper: full resolution, 6000 iterations, windows at stride 18/4.
    # BCP as its release runs LA: 2000 + 15000 iterations at batch 4 + 4.
    "paper": Scale("data/LA", (112, 112, 80), 6000, 2500, 150, 40, 18, 4, 1000,
                   schedules=(("bcp", Schedule(17000, 2500, bcp_stages(2000, 8, 4))),)),
    # The LA-half arena (prepare_la_half.py; volumes ~97x71x44), sized for 2 CPU cores (RESULTS.md): a 48x48x32
    # patch, 1200 iterations, lr x0.1 every 500, lambda(t) ramped over 8 epochs of 150 iterations (0.1 at the end),
    # test windows at the reference's density on the half grid (stride 9 in x, y, 2 in z). BCP: 400 pre-training
    # iterations, then the other rows' 1200 at their batch (2 + 2) and lr schedule. BCP at equal work: a UA-MT-unlabel
    # iteration is 30 forward-equivalents (177 GFLOP at this patch), BCP's 6 (stage 1) and 8 (stage 2), so 1200 + 3600
    # iterations do UA-MT's 1200 x 30 (stage 1 a quarter, as above; the lr step scaled with stage 2: 1500).
    "la_half": Scale(
        "data/LA_half", (48, 48, 32), 1200, 500, 150, 8, 9, 2, 200,
        schedules=(("bcp", Schedule(1600, 500, bcp_stages(400, 4, 2))),
                   ("bcp_equal_work", Schedule(4800, 1500, bcp_stages(1200, 4, 2))),
                   # CPS at 2 + 2 does 23.9 forward-equivalents an iteration (tools/forward_work.py), 20 % under
                   # UA-MT-unlabel's 30.0: UA-MT's work per run is 1500 iterations, the lr step and lambda's ramp
                   # scaled with them (x1.25).
                   ("cps_equal_work", Schedule(1500, 625, ("--rampup_epoch_iters", "188")))),
    ),
    # HC18 fetal-head ultrasound frames (2D, ~540x800, train.list 160 / test.list 40), sized for 2 CPU cores
    # (RESULTS.md, "HC18"): every frame resized to 128x192 (its 2:3 aspect) and trained whole (patch = frame), 600
    # iterations, lr x0.1 every 250 (the release's 2500 of 6000), the release's rot90 + flip; UA-MT: lambda(t)
    # ramped over 40 epochs of 15 iterations (0.1 at the end, the release's shape) and 4 labelled + 2 unlabelled items
    # a batch (the supervised batch's 4 labelled, plus unlabelled ones), the release's joint BatchNorm (the table
    # was run so; 2D runs now default to split, its own row); BCP: 4 = 2 + 2 items, 200 copy-paste
    # iterations, then 400 of self-training. One test window per frame. The 16 labelled frames are every 10th ID of
    # train.list, not the first 16: HC18's IDs run from small heads to large ones (RESULTS.md, "HC18").
    "hc18": Scale(
        "data/HC18", (128, 192), 600, 250, 15, 40, 32, 4, 200,
        schedules=(("bcp", Schedule(600, 250, bcp_stages(200, 4, 2))),),
        data_flags=("--resize", "128", "192"),
        method_flags=(("uamt_unlabel", (*BATCH_4PLUS2, "--student_batchnorm", "joint")),),
        labeled_lists=((16, "benchmarks/hc18_labelled_16.list"),),
    ),
    # CAMUS echocardiography (issue 22; 2D, 224x224, K = 4: LV cavity, LV myocardium, left atrium; train.list 1600
    # frames of 400 patients, test.list 200 of 50). Data: `ln -s ../../shared/data/CAMUS data/CAMUS` (data/ is
    # ignored). Frames resized to 112x112, EchoNet-Dynamic's size: a step costs a quarter of 224x224's, so a
    # 4000-iteration supervised run is ~16 min of one core (UA-MT ~2.5x); at 224x224 the three seeds of eight rows
    # would take days of the 2 cores. Metrics are at the frames' own 224x224 (test_LA.py). The whole frame is the
    # patch, one test window per frame. --augment flip_lr: apical views have the apex at the top, so a rot90'd frame
    # is anatomically implausible; a left-right mirror is the other vendors' screen convention. --group_by: every
    # split takes the four frames of a patient whole. Labelled sets: 10 and 40 whole patients (40 and 160 frames),
    # every 40th / 10th patient of train.list (benchmarks/camus_validation/make_root.py --arena_lists; the rule at
    # each list's top); supervised:1600 (every frame) is the floor: >= 90 LV-cavity Dice.
    # SCHEDULE, decided on validation patients (benchmarks/camus_validation: schedule.sh's rule, written before the
    # runs, amended (2a) before any 8000-iteration run; decide.py -> "schedule S4000 ... --postprocess lcc";
    # RESULTS.md, "CAMUS"): 4000 iterations, lr x0.1 at 2000, lambda(t) ramped over 40 epochs of 100 iterations
    # (0.1 at the run's end, the release's shape). Batches: 4 labelled items a step for every method (supervised 4;
    # UA-MT-unlabel, CPS and UniMatch 4 + 2 unlabelled; BCP 8 = 4 + 4, a quarter of the run copy-paste pre-training,
    # not validated: scaled with the schedule as the rule says).
    # --postprocess: every run is tested with none and with lcc, both kept (table.md, table_lcc.md); lcc is the
    # arena's headline (the rule's 3: on validation it did not lower any row's Dice).
    "camus": Scale(
        "data/CAMUS", (112, 112), 4000, 2000, 100, 40, 32, 4, 1000,
        schedules=(("bcp", Schedule(4000, 2000, bcp_stages(1000, 8, 4))),
                   # BCP at UA-MT-unlabel's work (tools/forward_work.py at 112x112, K = 4): UA-MT-unlabel 4 + 2 is 36.0
                   # forward-equivalents an iteration (144,000 a run), BCP's stages 12.0 and 16.0 (60,000 a run,
                   # 42 %); 2400 + 7200 iterations do 144,000 (stage 1 a quarter, as above; the lr step scaled x2.4).
                   ("bcp_equal_work", Schedule(9600, 4800, bcp_stages(2400, 8, 4)))),
        data_flags=("--resize", "112", "112", "--num_classes", "4", "--augment", "flip_lr",
                    "--group_by", CAMUS_GROUP_BY),
        method_flags=(("uamt_unlabel", BATCH_4PLUS2), ("cps", BATCH_4PLUS2), ("unimatch", BATCH_4PLUS2)),
        labeled_lists=((40, "benchmarks/camus_labelled_40.list"), (160, "benchmarks/camus_labelled_160.list")),
        postprocess=("none", "lcc"),
    ),
    # BUSI validation (issue 29; benchmarks/busi_validation/README.md, its rule written before any run): the
    # geometry candidates on data/BUSI_val (367 training frames, 92 validation frames of whole groups; make_lists.py
    # --root), supervised rows only, CAMUS's frame schedule (4000 iterations, lr x0.1 at 2000, batch 4) and mirror
    # (the transducer is at the top). A: the whole frame letterboxed to 256 (its stored resolution); B: letterboxed
    # to 128; C: 128 x 128 crops at stored resolution, a third of them on a lesion pixel, sliding windows at test.
    **{f"busi_val_{name}": Scale(
        "data/BUSI_val", (side, side), 4000, 2000, 100, 40, side // 2, 4, 2000,
        schedules=(("supervised_s8000", Schedule(8000, 4000)),),  # rule 1b: the chosen geometry at 8000
        data_flags=(*geometry, "--augment", "flip_lr", "--group_by", BUSI_GROUP_BY),
        labeled_lists=((70, "benchmarks/busi_validation/labelled_70.list"),),
    ) for name, side, geometry in (("a", 256, ("--letterbox", "256")), ("b", 128, ("--letterbox", "128")),
                                   ("c", 128, ("--oversample_foreground", "0.33")))},
}
# fmt: on


class Group(NamedTuple):
    method: str
    labelnum: int
    flags: tuple[str, ...] = ()
    variant: str | None = None  # --variant: run.json's method is <method>_<variant>, a group of its own


# group -> its runs' method, --labelnum, flags, variant. Order = run order within a seed: the floor (supervised:80)
# first, long UA-MT jobs beside short supervised ones.
GROUPS = {
    "supervised:80": Group("supervised", 80),
    "uamt_unlabel:16": Group("uamt_unlabel", 16),
    "supervised:16": Group("supervised", 16),
    "uamt_unlabel:8": Group("uamt_unlabel", 8),
    "supervised:8": Group("supervised", 8),
    "uamt_unlabel_nomask:16": Group("uamt_unlabel", 16, ("--uncertainty_mask", "0")),
    "bcp:8": Group("bcp", 8),
    "bcp:16": Group("bcp", 16),
    "uamt:16": Group("uamt", 16),
    "supervised:160": Group("supervised", 160),  # HC18: every train frame labelled
    "bcp_equal_work:8": Group("bcp", 8, variant="equal_work"),  # BCP with UA-MT's work (la_half)
    # UA-MT-unlabel with the supervised batch's 4 labelled items plus 2 unlabelled (la_half's default batch is 2 + 2)
    "uamt_unlabel_4plus2:16": Group("uamt_unlabel", 16, BATCH_4PLUS2, variant="4plus2"),
    "uamt_unlabel_4plus2:8": Group("uamt_unlabel", 8, BATCH_4PLUS2, variant="4plus2"),
    # UA-MT-unlabel with the labelled items' own BatchNorm statistics (HC18: issue 13's cause)
    "uamt_unlabel_bnsplit:16": Group("uamt_unlabel", 16, ("--student_batchnorm", "split")),
    # Cross pseudo supervision: two networks (its lambda ramped as UA-MT's, README "Cross pseudo supervision")
    "cps:8": Group("cps", 8),
    "cps:16": Group("cps", 16),
    "cps_equal_work:8": Group("cps", 8, variant="equal_work"),
    # UniMatch: weak-to-strong consistency, one network (README "UniMatch"). At 2 + 2 it does 30.7
    # forward-equivalents an iteration (tools/forward_work.py), 2.5 % over UA-MT-unlabel's 29.96: within 20 %, so it
    # runs at the arena's schedule and needs no equal-work row.
    "unimatch:8": Group("unimatch", 8),
    "unimatch:16": Group("unimatch", 16),
    "unimatch:40": Group("unimatch", 40),  # CAMUS
    "unimatch:160": Group("unimatch", 160),
    # UniMatch with the supervised batch's 4 labelled items plus 2 unlabelled, as uamt_unlabel_4plus2 (la_half; the
    # CAMUS rows run 4 + 2 already). 40.1 forward-equivalents an iteration (tools/forward_work.py --batch_size 6
    # --labeled_bs 4), 12 % over uamt_unlabel_4plus2's 35.9: within 20 %, the arena's schedule.
    "unimatch_4plus2:8": Group("unimatch", 8, BATCH_4PLUS2, variant="4plus2"),
    # CAMUS (issue 22): labelled frames of whole patients (4 a patient); run.json's method of a --net unet run is
    # <method>_unet (training/loop.py run_name), its group supervised_unet:40
    "supervised:1600": Group("supervised", 1600),
    "supervised:40": Group("supervised", 40),
    # UA-MT at the 2D default BatchNorm (split, decided on HC18 validation), named in run.json as it runs
    "uamt_unlabel_bnsplit:40": Group("uamt_unlabel", 40, ("--student_batchnorm", "split")),
    "bcp:40": Group("bcp", 40),
    "bcp_equal_work:40": Group("bcp", 40, variant="equal_work"),  # BCP with UA-MT's work (camus)
    "uamt_unlabel_bnsplit:160": Group("uamt_unlabel", 160, ("--student_batchnorm", "split")),
    "cps:40": Group("cps", 40),
    "supervised_unet:40": Group("supervised", 40, ("--net", "unet")),
    "uamt_unlabel_bnsplit_unet:40": Group("uamt_unlabel", 40, ("--student_batchnorm", "split", "--net", "unet")),
    # BUSI validation: 70 labelled frames (benchmarks/busi_validation/labelled_70.list) and all 367; rule 1b's
    # 8000-iteration schedule; rule 2's batch Dice
    "supervised:367": Group("supervised", 367),
    "supervised:70": Group("supervised", 70),
    "supervised_s8000:367": Group("supervised", 367, variant="s8000"),
    "supervised_s8000:70": Group("supervised", 70, variant="s8000"),
    "supervised_batchdice:367": Group("supervised", 367, ("--dice", "batch")),
    "supervised_batchdice:70": Group("supervised", 70, ("--dice", "batch")),
    "supervised_s8000_batchdice:367": Group("supervised", 367, ("--dice", "batch"), variant="s8000"),
    "supervised_s8000_batchdice:70": Group("supervised", 70, ("--dice", "batch"), variant="s8000"),
}
DEFAULT_GROUPS = list(GROUPS)[:8]
CONFIG_GROUPS = {"hc18": ["supervised:160", "uamt_unlabel:16", "supervised:16", "bcp:16", "uamt_unlabel_bnsplit:16"],
                 "camus": ["supervised:1600", "uamt_unlabel_bnsplit:40", "supervised:40", "bcp:40",
                           "uamt_unlabel_bnsplit:160", "supervised:160", "cps:40", "supervised_unet:40",
                           # (uamt_unlabel_bnsplit_unet:40 retired before any run: UA-MT adds nothing on the V-Net
                           # here and the U-Net is level with it, so the row could only repeat both; RESULTS.md)
                           "unimatch:40", "unimatch:160", "bcp_equal_work:40"],
                 **{f"busi_val_{x}": ["supervised:367", "supervised:70"] for x in "abc"},
                 "la_half": [*DEFAULT_GROUPS, "bcp_equal_work:8", "uamt_unlabel_4plus2:16",
                             "uamt_unlabel_4plus2:8", "cps:8", "cps:16", "cps_equal_work:8", "unimatch:8",
                             "unimatch:16", "unimatch_4plus2:8"]}  # fmt: skip
# (any other config: DEFAULT_GROUPS)
# The paired tests of the table: (A, B) for each that has both groups.
COMPARE = [("uamt_unlabel:8", "supervised:8"), ("uamt_unlabel:16", "supervised:16"),
           ("uamt_unlabel:16", "uamt_unlabel_nomask:16"), ("uamt_unlabel_nomask:16", "supervised:16"),
           ("supervised:80", "supervised:16"),
           ("bcp:8", "uamt_unlabel:8"), ("bcp:8", "supervised:8"), ("bcp:16", "uamt_unlabel:16"),
           ("bcp:16", "supervised:16"), ("supervised:160", "supervised:16"),
           ("bcp_equal_work:8", "uamt_unlabel:8"), ("bcp_equal_work:8", "supervised:8"), ("bcp_equal_work:8", "bcp:8"),
           ("uamt_unlabel_4plus2:16", "supervised:16"), ("uamt_unlabel_4plus2:16", "uamt_unlabel:16"),
           ("uamt_unlabel_4plus2:8", "supervised:8"), ("uamt_unlabel_4plus2:8", "uamt_unlabel:8"),
           ("bcp_equal_work:8", "uamt_unlabel_4plus2:8"),
           ("cps:8", "supervised:8"), ("cps:8", "uamt_unlabel:8"), ("cps:16", "supervised:16"),
           ("cps:16", "uamt_unlabel:16"), ("cps_equal_work:8", "uamt_unlabel:8"), ("cps_equal_work:8", "supervised:8"),
           ("uamt_unlabel_bnsplit:16", "supervised:16"), ("uamt_unlabel_bnsplit:16", "uamt_unlabel:16"),
           ("unimatch:8", "supervised:8"), ("unimatch:8", "uamt_unlabel:8"), ("unimatch:16", "supervised:16"),
           ("unimatch:16", "uamt_unlabel:16"), ("unimatch_4plus2:8", "supervised:8"),
           ("unimatch_4plus2:8", "uamt_unlabel_4plus2:8"), ("unimatch_4plus2:8", "unimatch:8"),
           ("unimatch_4plus2:8", "bcp_equal_work:8"),
           ("uamt_unlabel_bnsplit:40", "supervised:40"), ("bcp:40", "supervised:40"),
           ("bcp:40", "uamt_unlabel_bnsplit:40"),
           ("cps:40", "supervised:40"), ("supervised_unet:40", "supervised:40"),
           ("uamt_unlabel_bnsplit:160", "supervised:160"), ("supervised:1600", "supervised:40"),
           ("unimatch:40", "supervised:40"), ("unimatch:40", "uamt_unlabel_bnsplit:40"),
           ("unimatch:160", "supervised:160"), ("uamt_unlabel_bnsplit_unet:40", "supervised_unet:40"),
           ("uamt_unlabel_bnsplit_unet:40", "uamt_unlabel_bnsplit:40"),
           ("bcp_equal_work:40", "supervised:40"), ("bcp_equal_work:40", "uamt_unlabel_bnsplit:40"),
           ("bcp_equal_work:40", "bcp:40"), ("unimatch:40", "bcp_equal_work:40"),
           ("unimatch:40", "bcp:40")]  # fmt: skip
GAP = ("supervised:16", "uamt_unlabel:16", "supervised:80")  # the share of the 16 -> 80 gap that UA-MT closes
CONFIG_GAP = {
    "hc18": ("supervised:16", "uamt_unlabel:16", "supervised:160"),
    "camus": ("supervised:40", "uamt_unlabel_bnsplit:40", "supervised:1600"),
}  # else GAP

# The config flags of a method's runs beyond the common ones: lambda(t)'s ramp for the methods that ramp a consistency
# weight as the release does (Scale.rampup_epoch_iters, Scale.consistency_rampup).
SCHEDULE_FLAGS = {
    "uamt": ("rampup_epoch_iters", "consistency_rampup"),
    "uamt_unlabel": ("rampup_epoch_iters", "consistency_rampup"),
    "cps": ("rampup_epoch_iters", "consistency_rampup"),
}

# run.json's method (<method>[_<variant>], "_<net>" for another network) -> its name in the tables; a method without
# one is shown by its run.json name.
DISPLAY_NAMES = {
    "supervised": "V-Net (supervised)",
    "supervised_unet": "U-Net (supervised)",
    "supervised_s8000": "V-Net (supervised), 8000 iterations",
    "supervised_batchdice": "V-Net (supervised), batch Dice",
    "supervised_s8000_batchdice": "V-Net (supervised), 8000 iterations, batch Dice",
    "uamt": "UA-MT, consistency on all items",
    "uamt_nomask": "MT (mask off), all items",
    "uamt_unlabel": "UA-MT, consistency on unlabelled items",
    "uamt_unlabel_nomask": "MT (mask off), unlabelled items",
    "uamt_unlabel_bnsplit": "UA-MT, unlabelled items, split BatchNorm",
    "uamt_unlabel_4plus2": "UA-MT, unlabelled items, 4 + 2 a batch",
    "bcp": "BCP (bidirectional copy-paste)",
    "bcp_equal_work": "BCP, UA-MT's work per run",
    "cps": "CPS (cross pseudo supervision)",
    "cps_equal_work": "CPS, UA-MT's work per run",
    "unimatch": "UniMatch",
    "unimatch_equal_work": "UniMatch, UA-MT's work per run",
    "unimatch_4plus2": "UniMatch, 4 + 2 a batch",
}


def training_script(method: str) -> list[str]:
    """The command that trains `method`: its train_<method>.py alias where there is one (the scripts users know),
    else train.py --method <method>."""
    alias = f"train_{method}.py"
    return [alias] if (REPO / alias).is_file() else ["train.py", "--method", method]


# Rows given no more seeds (config -> group -> why), decided before their missing seeds would have run: their kept runs
# stay in the tables, marked retired, and RESULTS.md says why. A group with no run at all leaves its config's list.
RETIRED = {
    "camus": {
        # One seed: -0.85 under BCP's own schedule (p = 0.001); equal work is not what decides BCP on CAMUS, bcp:40 is.
        "bcp_equal_work:40": "one seed, below bcp:40 (p = 0.001): the row that decides BCP here is bcp:40",
        # Two seeds: -0.16 against the V-Net (p = 0.35): the network does not matter at 40 frames.
        "supervised_unet:40": "two seeds, level with the V-Net (-0.16, p = 0.35): the question it asked is answered",
    },
}
