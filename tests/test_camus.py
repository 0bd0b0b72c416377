"""Issue 22's CAMUS arena: run_table's camus commands, the labelled lists of whole patients, and the validation root
(benchmarks/camus_validation/make_root.py) on a made-up folder. Checks against the real lists skip without the data."""

from __future__ import annotations

import builtins
import sys
from pathlib import Path

import pytest
from conftest import REPO

import training.loop as training
from methods import Supervised, UAMTUnlabel
from training.options import case_groups, parse_id_list, read_id_list

sys.path.insert(0, str(REPO / "benchmarks" / "camus_validation"))
import make_root  # noqa: E402

from tools import run_table  # noqa: E402

SHARED_CAMUS = REPO.parent / "shared" / "data" / "CAMUS"
ARENA_LISTS = {40: REPO / "benchmarks" / "camus_labelled_40.list", 160: REPO / "benchmarks" / "camus_labelled_160.list"}
VALIDATION_LISTS = {n: REPO / "benchmarks" / "camus_validation" / f"labelled_{n}.list" for n in (40, 160)}


def _flag(command: list[str], flag: str, n: int = 1) -> list[str]:
    i = command.index(flag)
    return command[i + 1 : i + 1 + n]


def test_camus_commands_carry_the_frame_size_classes_patients_and_labelled_lists():
    scale = run_table.CONFIGS["camus"]
    for group in run_table.CONFIG_GROUPS["camus"]:
        exp, (train, test, _), final = run_table.job_commands(group, 1337, scale, "model/camus", "cpu")
        assert _flag(train, "--root_path") == _flag(test, "--root_path") == ["data/CAMUS"], group
        assert _flag(train, "--patch_size", 2) == _flag(test, "--patch_size", 2) == ["112", "112"]  # whole frame
        assert _flag(train, "--resize", 2) == ["112", "112"] and _flag(train, "--num_classes") == ["4"]
        assert _flag(train, "--group_by") == [r"^(patient\d+)_"] and _flag(train, "--augment") == ["flip_lr"]
        assert _flag(test, "--model") == [exp] and _flag(test, "--iteration") == [str(final)]  # test reads run.json
        labelnum = int(_flag(train, "--labelnum")[0])
        if labelnum in ARENA_LISTS:
            assert _flag(train, "--labeled_list") == [str(ARENA_LISTS[labelnum].relative_to(REPO))], group
        else:
            assert labelnum == 1600 and "--labeled_list" not in train
    # the flags parse as the training scripts read them
    uamt = run_table.job_commands("uamt_unlabel_bnsplit:40", 1337, scale, "m", "cpu")[1][0]
    args = training.training_parser("", "x", UAMTUnlabel).parse_args(uamt[2:])
    assert (args.resize, args.num_classes, args.group_by) == ([112, 112], 4, r"^(patient\d+)_")
    assert (args.batch_size, args.labeled_bs, args.labeled_list) == (6, 4, "benchmarks/camus_labelled_40.list")
    unet = run_table.job_commands("supervised_unet:40", 1337, scale, "m", "cpu")[1][0]
    assert training.training_parser("", "x", Supervised).parse_args(unet[2:]).net == "unet"
    # the other configs' commands carry none of it
    for config in ("la_half", "hc18", "paper"):
        command = run_table.job_commands("supervised:16", 1337, run_table.CONFIGS[config], "m", "cpu")[1][0]
        assert "--group_by" not in command and "--num_classes" not in command


def _patients(ids: list[str]) -> dict[str, list[str]]:
    return make_root.patients(ids, make_root.GROUP_BY)


@pytest.mark.parametrize("lists", [ARENA_LISTS, VALIDATION_LISTS], ids=["arena", "validation"])
def test_labelled_lists_take_whole_patients_by_their_rule(lists):
    for frames, path in lists.items():
        text = path.read_text()
        assert text.startswith("# ") and "floor(i *" in text  # the rule heads the list
        ids = read_id_list(path)
        by_patient = _patients(ids)
        assert len(ids) == frames and len(by_patient) == frames // 4 and all(len(f) == 4 for f in by_patient.values())
    train_list = SHARED_CAMUS / "train.list"
    if not train_list.is_file():
        pytest.skip("CAMUS not at ../shared/data/CAMUS")
    train_ids = read_id_list(train_list)
    if lists is VALIDATION_LISTS:  # the validation root's train.list: the first 350 patients
        first = list(_patients(train_ids))[:350]
        train_ids = [i for i in train_ids if case_groups(make_root.GROUP_BY, [i], "x")[i] in set(first)]
    groups = case_groups(make_root.GROUP_BY, train_ids, str(train_list))
    for frames, path in lists.items():
        ids = read_id_list(path)
        chosen = {groups[i] for i in ids}
        assert sorted(ids) == sorted(i for i in train_ids if groups[i] in chosen), path  # every frame of each patient
        origin = "CAMUS train.list" if lists is ARENA_LISTS else "the validation root's train.list"
        assert path.read_text() == make_root.labelled_list(train_ids, frames // 4, origin)  # as the rule writes it


def _made_up_camus(root: Path, train_patients: int = 12, test_patients: int = 2) -> tuple[list[str], list[str]]:
    """images/ and masks/ of patients' four frames (empty stand-in files: the builder links, never reads them)."""
    views = ("2CH_ED", "2CH_ES", "4CH_ED", "4CH_ES")
    ids = [f"patient{p:04d}_{v}" for p in range(1, train_patients + test_patients + 1) for v in views]
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
        for case_id in ids:
            (root / folder / f"{case_id}.png").write_bytes(b"")
    train, test = ids[: 4 * train_patients], ids[4 * train_patients :]
    (root / "train.list").write_text("\n".join(train) + "\n")
    (root / "test.list").write_text("\n".join(test) + "\n")
    return train, test


def test_validation_root_splits_whole_patients_and_never_reads_test_list(tmp_path, monkeypatch):
    source, out = tmp_path / "CAMUS", tmp_path / "CAMUS_val"
    train, test = _made_up_camus(source)
    opened: list[str] = []
    real_open, real_read = builtins.open, Path.read_text

    def spy_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def spy_read(self, *args, **kwargs):
        opened.append(str(self))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(Path, "read_text", spy_read)
    kept, validation = make_root.build_validation_root(source, out, validation_patients=3)
    monkeypatch.undo()
    assert not [p for p in opened if p.endswith("test.list") and str(source) in p]
    assert read_id_list(out / "train.list") == kept == train[:36] and read_id_list(out / "test.list") == validation
    assert validation == train[36:]  # the last 3 patients, whole
    assert not set(_patients(kept)) & set(_patients(validation))
    assert all(len(f) == 4 for f in (*_patients(kept).values(), *_patients(validation).values()))
    linked = {p.stem for p in (out / "images").iterdir()} | {p.stem for p in (out / "masks").iterdir()}
    assert linked == set(train) and not linked & set(test)  # no test.list frame is linked
    assert (out / "images" / f"{train[0]}.png").resolve() == (source / "images" / f"{train[0]}.png").resolve()
    # the labelled rule on the 9 training patients: 3 of them spread evenly (positions 0, 3, 6)
    labelled = parse_id_list(make_root.labelled_list(kept, 3, "x"))
    assert list(_patients(labelled)) == ["patient0001", "patient0004", "patient0007"] and len(labelled) == 12
    make_root.build_validation_root(source, out, validation_patients=3)  # again: links replaced, same lists
    assert read_id_list(out / "test.list") == validation


def test_spread_takes_every_kth_when_it_divides():
    items = [str(i) for i in range(400)]
    assert make_root.spread(items, 10) == items[::40] and make_root.spread(items, 40) == items[::10]
    assert make_root.spread(items[:350], 40)[:3] == ["0", "8", "17"]
    with pytest.raises(ValueError):
        make_root.spread(items[:5], 6)


def _fake_run(root: Path, name: str, iterations: int, dice: dict[str, list[float]]) -> None:
    """A kept validation run: run.json and its plain and lcc tests, per-class Dice per frame (other metrics 0.5)."""
    import json

    from evaluation.metrics import metric_columns

    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)  # a rerun replaces it
    info = {"method": "supervised", "labelled": 40, "unlabelled": 0, "seed": 1, "iterations": iterations,
            "train_wall_s": 1.0, "args": {"patch_size": [112, 112]}}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(info))
    for post, values in dice.items():
        test = folder / f"test_iter_{iterations}{'' if post == 'none' else '_lcc'}"
        test.mkdir(exist_ok=True)
        rows = ["case," + ",".join(metric_columns(4))]
        for i, d in enumerate(values):
            row = {m: 0.5 for m in metric_columns(4)} | {"dice": d, "dice_1": d, "dice_2": d, "dice_3": d}
            rows.append(f"f{i}," + ",".join(str(row[m]) for m in metric_columns(4)))
        (test / "metrics.csv").write_text("\n".join(rows) + "\n")


def test_decide_applies_the_rule_written_before_the_runs(tmp_path):
    """S4000 reaches the floor, S8000 gains 2 Dice on sup40 over 20 frames: S8000; lcc drops uamt40's Dice: none."""
    import decide

    assert decide.decide(tmp_path).startswith("pending: 12 of 12")
    frames = 20
    base = {"sup1400": 0.92, "sup40": 0.80, "uamt40": 0.82}
    for iterations in decide.CANDIDATES:
        for row, d in base.items():
            gain = 0.02 if (iterations == 8000 and row == "sup40") else 0.0
            for seed in decide.SEEDS:
                values = [d + gain + 0.001 * i for i in range(frames)]
                lcc = [v - (0.01 if row == "uamt40" else 0.0) for v in values]
                _fake_run(tmp_path, f"s{iterations}_{row}_s{seed}", iterations, {"none": values, "lcc": lcc})
    assert decide.decide(tmp_path) == "schedule S8000 (8000 iterations, lr x0.1 at 4000); --postprocess none"


def test_decide_drops_s8000_when_its_seed_1337_screen_gains_under_half_a_dice(tmp_path):
    """Rule 2a: with S4000 complete, seed 1337 of S8000 gaining 0.3 Dice on sup40 and uamt40 drops S8000 (S4000
    chosen without S8000's other runs); a 0.6 gain on uamt40 alone passes the screen, and the rest of S8000 is then
    pending. lcc keeps every row's Dice here: lcc."""
    import decide

    frames = 20
    base = {"sup1400": 0.92, "sup40": 0.80, "uamt40": 0.82}
    for row, d in base.items():
        for seed in decide.SEEDS:
            values = [d + 0.001 * i for i in range(frames)]
            _fake_run(tmp_path, f"s4000_{row}_s{seed}", 4000, {"none": values, "lcc": values})
    assert decide.decide(tmp_path).startswith("pending: 6 of 12 seed-pooled tests missing, e.g. s8000_sup1400")
    for row, gain in (("sup40", 0.003), ("uamt40", 0.003)):
        values = [base[row] + gain + 0.001 * i for i in range(frames)]
        _fake_run(tmp_path, f"s8000_{row}_s1337", 8000, {"none": values, "lcc": values})
    assert decide.screen(tmp_path) == "drop"
    assert decide.decide(tmp_path).startswith("schedule S4000 (4000 iterations, lr x0.1 at 2000) (S8000 dropped")
    assert decide.decide(tmp_path).endswith("--postprocess lcc")
    values = [base["uamt40"] + 0.006 + 0.001 * i for i in range(frames)]
    _fake_run(tmp_path, "s8000_uamt40_s1337", 8000, {"none": values, "lcc": values})
    assert decide.screen(tmp_path) == "pass"
    assert decide.decide(tmp_path).startswith("pending: 6 of 12")


def test_camus_groups_are_named_as_their_runs_name_themselves():
    """Each group's run.json method (training/loop.py run_name: BatchNorm split, --net unet) is the group's name, so
    summarize finds every row of the table."""
    from methods import METHODS

    scale = run_table.CONFIGS["camus"]
    for group in run_table.CONFIG_GROUPS["camus"]:
        method = run_table.GROUPS[group].method
        train = run_table.job_commands(group, 1337, scale, "m", "cpu")[1][0]
        instance = METHODS[method].__new__(METHODS[method])  # only its args: nothing built
        instance.args = training.training_parser("", "x", METHODS[method]).parse_args(train[2:])
        assert f"{training.run_name(instance)}:{_flag(train, '--labelnum')[0]}" == group


def test_camus_runs_are_tested_plain_and_with_lcc_and_both_are_kept(tmp_path):
    """The 2D table reports both --postprocess none and lcc (issue 22): each camus run gets a plain test and an lcc
    test, results/ keeps both tests' files, and a run with only the plain test is not taken as done. LA-half keeps
    the papers' protocol: one plain test."""
    _, (_, plain, lcc), final = run_table.job_commands("supervised:40", 1337, run_table.CONFIGS["camus"], "m", "cpu")
    assert "--postprocess" not in plain and lcc[-2:] == ["--postprocess", "lcc"] and lcc[:-2] == plain
    _, commands, _ = run_table.job_commands("supervised:8", 1337, run_table.CONFIGS["la_half"], "m", "cpu")
    assert len(commands) == 2 and not any("--postprocess" in c for c in commands)
    names = run_table.kept_files(run_table.CONFIGS["camus"].postprocess)
    run = tmp_path / "run"
    for name in run_table.KEPT:
        (run / name.format(final=final)).parent.mkdir(parents=True, exist_ok=True)
        (run / name.format(final=final)).write_text("x")
    assert not run_table.has_results(run, final, names)  # the lcc test is missing
    for name in names:
        (run / name.format(final=final)).parent.mkdir(parents=True, exist_ok=True)
        (run / name.format(final=final)).write_text("x")
    run_table.keep_results(run, tmp_path / "kept", final, names)
    assert (tmp_path / "kept" / f"test_iter_{final}_lcc" / "metrics.csv").is_file()
    assert run_table.has_results(tmp_path / "kept", final, names)
