"""summarize.py's pieces: loading finished runs, mean ± std over seeds, the paired Wilcoxon test; prepare_la_half.py."""

import itertools
import json
import math
import sys

import numpy as np
import pytest
from conftest import run_script as subprocess_run
from scipy.interpolate import RegularGridInterpolator

from dataloaders.h5_cases import case_path, read_case, read_list
from dataloaders.resample import resample_dataset
from evaluation.metrics import METRICS
from evaluation.results import (
    gap_closed,
    group_runs,
    load_run,
    paired_wilcoxon,
    per_seed_table,
    results_table,
    splice,
    strip_plot,
)
from utils.errors import DataError


def write_run(folder, method, seed, dice, iterations=300, tested=None, labelled=16, patch_size=None):
    """A finished run as training and test_LA.py leave it: run.json and test_iter_<N>/metrics.csv."""
    folder.mkdir(parents=True)
    info = {"method": method, "labelled": labelled, "unlabelled": 64, "seed": seed, "iterations": iterations,
            "train_wall_s": 600.0}  # fmt: skip
    if patch_size:
        info["args"] = {"patch_size": patch_size}
    (folder / "run.json").write_text(json.dumps(info))
    test = folder / f"test_iter_{tested or iterations}"
    test.mkdir()
    (test / "test.json").write_text(json.dumps({"wall_s": 2.0 * len(dice)}))
    lines = ["case," + ",".join(METRICS)]
    for i, d in enumerate(dice):
        lines.append(f"case{i}," + ",".join(str(d if m == "dice" else 1.0) for m in METRICS))
    lines.append("mean," + ",".join("0" for _ in METRICS))  # the csv's own mean row is not used
    (test / "metrics.csv").write_text("\n".join(lines) + "\n")
    return folder


def exact_two_sided_p(differences):
    """The Wilcoxon signed-rank p-value by enumerating all 2^n sign assignments (no ties, no zeros)."""
    ranks = np.argsort(np.argsort(np.abs(differences))) + 1
    observed = ranks[differences > 0].sum()
    totals = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(ranks))]
    lower = np.mean([t <= observed for t in totals])
    upper = np.mean([t >= observed for t in totals])
    return min(1.0, 2 * min(lower, upper))


def test_paired_wilcoxon_matches_exact_enumeration_on_case_means_over_seeds(tmp_path):
    rng = np.random.default_rng(0)
    n = 10
    base = rng.uniform(0.6, 0.9, n)
    a = [write_run(tmp_path / f"a{s}", "uamt_unlabel", s, base + rng.uniform(-0.02, 0.06, n)) for s in (1, 2)]
    b = [write_run(tmp_path / f"b{s}", "supervised", s, base + rng.uniform(-0.03, 0.03, n)) for s in (1, 2)]
    groups = group_runs(load_run(p) for p in a + b)
    result = paired_wilcoxon(groups["uamt_unlabel:16"], groups["supervised:16"], "dice")

    def case_means(runs):
        return np.mean([[r.cases[f"case{i}"]["dice"] for i in range(n)] for r in runs], axis=0)

    differences = case_means(groups["uamt_unlabel:16"]) - case_means(groups["supervised:16"])
    assert result.cases == n
    assert result.mean_difference == pytest.approx(differences.mean())
    assert result.p_value == pytest.approx(exact_two_sided_p(differences))


def test_paired_wilcoxon_leaves_out_cases_undefined_in_either(tmp_path):
    a = load_run(write_run(tmp_path / "a", "uamt_unlabel", 1, [0.9, 0.8, math.nan, 0.7, 0.6, 0.85]))
    b = load_run(write_run(tmp_path / "b", "supervised", 1, [0.8, 0.75, 0.5, math.nan, 0.58, 0.7]))
    result = paired_wilcoxon([a], [b])
    assert result.cases == 4
    assert result.p_value == pytest.approx(exact_two_sided_p(np.array([0.1, 0.05, 0.02, 0.15])))  # = 2/16


def test_table_gives_mean_and_sample_std_over_seeds_of_per_run_means(tmp_path):
    runs = [
        write_run(tmp_path / "s1", "supervised", 1, [0.8, 0.9, math.nan]),  # run mean 0.85: NaN cases left out
        write_run(tmp_path / "s2", "supervised", 2, [0.7, 0.7, 0.7]),  # run mean 0.70
        write_run(tmp_path / "u1", "uamt_unlabel", 1, [0.9, 0.9, 0.9]),  # a single seed: no std
    ]
    table = results_table(group_runs(load_run(p) for p in runs)).splitlines()
    supervised = table[2].split(" | ")
    expected_std = np.std([0.85, 0.70], ddof=1) * 100
    assert supervised[1:4] == ["`supervised:16`", "16", "64"]
    assert supervised[4] == f"77.50 ± {expected_std:.2f}"
    assert supervised[10] == "1, 2"
    assert supervised[11:] == ["10.0", "2.00", "0 / 0 of 6 |"]  # 600 s per run; 2 s per case; nothing skipped
    assert table[3].split(" | ")[4] == "90.00"


def test_table_says_how_many_cases_the_distance_and_precision_means_skipped(tmp_path):
    """An empty prediction: Dice, Jaccard and recall 0 (kept in their means), precision, 95HD and ASD undefined (NaN,
    left out of theirs). The table must say so, or the distances of a run that misses cases look better."""
    run = write_run(tmp_path / "s1", "supervised", 1, [0.8, 0.9, 0.7])
    lines = (run / "test_iter_300" / "metrics.csv").read_text().splitlines()
    lines[1] = "case0,0.0,0.0,nan,nan,nan,0.0"  # case0 predicted empty
    lines[2] = "case1,0.9,0.8,12.0,3.0,0.95,0.9"
    lines[3] = "case2,0.7,0.6,4.0,1.0,0.75,0.7"
    (run / "test_iter_300" / "metrics.csv").write_text("\n".join(lines) + "\n")
    other = write_run(tmp_path / "s2", "supervised", 2, [0.8, 0.8, 0.8])  # nothing skipped on this seed
    clean = write_run(tmp_path / "u1", "uamt_unlabel", 1, [0.9, 0.9, 0.9])
    table = results_table(group_runs(load_run(p) for p in (run, other, clean)))
    lines = table.splitlines()
    assert lines[0].split(" | ")[-1] == "n skipped: 95HD, ASD / precision |"
    supervised, semi = lines[2].split(" | "), lines[3].split(" | ")
    assert supervised[-1] == "1 / 1 of 6 |" and semi[-1] == "0 / 0 of 3 |"
    # The Dice column counts the empty prediction as 0; the 95HD mean of seed 1 is over cases 1 and 2 only.
    assert supervised[4] == f"{np.mean([0.8, 1.6 / 3]) * 100:.2f} ± {np.std([0.8, 1.6 / 3], ddof=1) * 100:.2f}"
    assert supervised[6] == f"{np.mean([8.0, 1.0]):.2f} ± {np.std([8.0, 1.0], ddof=1):.2f}"
    assert lines[-1].startswith("`n skipped`: cases") and "empty prediction" in lines[-1]
    assert "`n skipped`" not in results_table(group_runs([load_run(clean)]))  # the note only where a mean skipped


def test_distances_are_headed_in_pixels_for_2d_frames_and_voxels_for_volumes(tmp_path):
    frame = write_run(tmp_path / "f", "supervised", 1, [0.8], patch_size=[128, 192])
    volume = write_run(tmp_path / "v", "supervised", 2, [0.8], patch_size=[112, 112, 80])
    old = write_run(tmp_path / "o", "uamt_unlabel", 1, [0.8])  # run.json before args were kept: a volume
    for paths, unit in [([frame], "px"), ([volume, old], "vox"), ([frame, volume], "vox/px")]:
        header = results_table(group_runs(load_run(p) for p in paths)).splitlines()[0].split(" | ")
        assert header[6:8] == [f"95HD ({unit})", f"ASD ({unit})"]


def test_only_the_final_iteration_is_read(tmp_path):
    run = write_run(tmp_path / "r", "supervised", 1, [0.8, 0.9], iterations=300, tested=200)
    with pytest.raises(DataError, match="test_iter_300/metrics.csv: missing; .*--iteration 300"):
        load_run(run)


def test_two_runs_of_one_seed_in_a_group_are_refused(tmp_path):
    runs = [write_run(tmp_path / n, "supervised", 7, [0.8, 0.9]) for n in ("a", "b")]
    with pytest.raises(DataError, match="both seed 7 of supervised:16"):
        group_runs(load_run(p) for p in runs)


def test_half_resolution_copy_keeps_the_layout_and_interpolates_trilinearly(synthetic_root, tmp_path):
    count = resample_dataset(synthetic_root, tmp_path / "half", 0.5)
    ids = read_list(synthetic_root, "train") + read_list(synthetic_root, "test")
    assert count == len(ids)
    for split in ("train", "test"):
        assert read_list(tmp_path / "half", split) == read_list(synthetic_root, split)
    for case_id in ids[:3]:
        image, label = read_case(case_path(synthetic_root, case_id))
        small_image, small_label = read_case(case_path(tmp_path / "half", case_id))
        assert small_image.shape == small_label.shape == tuple(round(s * 0.5) for s in image.shape)
        # Trilinear interpolation at the output grid, whose first and last samples sit on the input's corners.
        axes = [np.arange(s) for s in image.shape]
        points = np.meshgrid(*[np.linspace(0, s - 1, n) for s, n in zip(image.shape, small_image.shape)], indexing="ij")
        expected = RegularGridInterpolator(axes, image)(np.stack(points, -1))
        np.testing.assert_allclose(small_image, expected, atol=1e-4)
        assert set(np.unique(small_label)) <= {0, 1}
        assert small_label.mean() == pytest.approx(label.mean(), rel=0.25)


def test_pending_groups_and_seeds_are_marked_in_the_table(tmp_path):
    runs = [
        write_run(tmp_path / "s1", "supervised", 1337, [0.8, 0.9]),
        write_run(tmp_path / "u1", "uamt_unlabel", 1337, [0.9, 0.7]),
    ]
    groups = group_runs(load_run(p) for p in runs)
    table = results_table(groups, ["supervised:16", "bcp:16", "uamt_unlabel:16"], seeds_per_group=3).splitlines()
    rows = [line.split(" | ") for line in table[2:]]
    assert [r[1] for r in rows] == ["`supervised:16`", "`bcp:16`", "`uamt_unlabel:16`"]  # the expected order
    assert rows[0][10] == "1337 (pending: 1 of 3 seeds)"
    assert "pending (0 of 3 seeds)" in rows[1] and rows[1][4] == ""  # no numbers for a group without runs
    assert len(rows[1]) == len(rows[0])
    retired = results_table(groups, ["supervised:16", "uamt_unlabel:16"], 3, retired=["supervised:16"]).splitlines()
    assert retired[2].split(" | ")[10] == "1337 (retired at 1 of 3 seeds)"
    assert retired[3].split(" | ")[10] == "1337 (pending: 1 of 3 seeds)"


def test_run_table_trains_no_more_seeds_of_a_retired_group(monkeypatch, capsys):
    from tools import run_table

    monkeypatch.setattr(run_table, "RETIRED", {"camus": {"cps:40": "why"}})
    monkeypatch.setattr("sys.argv", ["run_table", "--config", "camus", "--groups", "cps:40", "supervised:40",
                                     "--seeds", "1337", "--dry_run"])  # fmt: skip
    run_table.main()
    printed = capsys.readouterr().out
    assert "--exp supervised_40_seed1337" in printed and "cps_40" not in printed


def test_gap_closed_is_the_share_of_the_low_to_high_difference(tmp_path):
    runs = [
        write_run(tmp_path / "l", "supervised", 1, [0.6, 0.7]),
        write_run(tmp_path / "h", "supervised", 1, [0.9, 0.9], labelled=80),
        write_run(tmp_path / "s", "uamt_unlabel", 1, [0.7, 0.75]),
    ]
    groups = group_runs(load_run(p) for p in runs)
    assert gap_closed(groups, "supervised:16", "uamt_unlabel:16", "supervised:80") == pytest.approx(
        (0.725 - 0.65) / (0.9 - 0.65)
    )


def test_strip_plot_draws_every_case_of_every_seed(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    runs = [write_run(tmp_path / f"s{s}", "supervised", s, [0.8, 0.9, math.nan]) for s in (1, 2)]
    drawn = []
    real = matplotlib.axes.Axes.scatter
    monkeypatch.setattr(
        matplotlib.axes.Axes, "scatter", lambda self, x, y, **k: drawn.append(list(y)) or real(self, x, y, **k)
    )
    strip_plot(group_runs(load_run(p) for p in runs), tmp_path / "dice.png")
    assert drawn == [[80.0, 90.0], [80.0, 90.0]]  # percent; the NaN case left out
    assert (tmp_path / "dice.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_table_keeps_results_and_skips_what_is_kept(tmp_path):
    from tools import run_table

    run, kept = tmp_path / "model" / "r", tmp_path / "results" / "r"
    write = "import pathlib, sys; r = pathlib.Path(sys.argv[1]); (r / 'test_iter_5').mkdir(parents=True, exist_ok=True)"
    write += "; [(r / n).write_text(n) for n in ('run.json', 'test_iter_5/test.json', 'test_iter_5/metrics.csv')]"
    message = run_table.run_job("r", [[sys.executable, "-c", write, str(run)]], run, kept, 1, 5)
    assert "trained and tested" in message
    assert (kept / "test_iter_5" / "metrics.csv").read_text() == "test_iter_5/metrics.csv"
    assert not (kept / "job.log").exists()  # only the small results are kept
    # Kept results: nothing runs (a command that would fail proves it).
    assert "skipped" in run_table.run_job("r", [[sys.executable, "-c", "raise SystemExit(1)"]], run, kept, 1, 5)
    # A run tested on this machine but not yet kept is copied, not retrained.
    other_kept = tmp_path / "results2" / "r"
    assert "copied" in run_table.run_job("r", [[sys.executable, "-c", "raise SystemExit(1)"]], run, other_kept, 1, 5)
    assert (other_kept / "run.json").is_file()


def test_a_bf16_run_is_its_own_group(tmp_path):
    fp32 = write_run(tmp_path / "a", "uamt_unlabel", 1337, [0.8, 0.9])
    bf16 = write_run(tmp_path / "b", "uamt_unlabel", 1337, [0.7, 0.9])
    info = json.loads((bf16 / "run.json").read_text())
    (bf16 / "run.json").write_text(json.dumps(info | {"args": {"precision": "bf16"}}))
    groups = group_runs(load_run(p) for p in (fp32, bf16))  # same seed, no clash
    assert list(groups) == ["uamt_unlabel:16", "uamt_unlabel:16@bf16"]
    result = paired_wilcoxon(groups["uamt_unlabel:16@bf16"], groups["uamt_unlabel:16"])
    assert result.mean_difference == pytest.approx(-0.05)


def test_splice_replaces_only_the_marked_table(tmp_path):
    document = tmp_path / "RESULTS.md"
    before = "# Results\n\nprose\n<!-- BEGIN results/a/table.md -->\n| old |\n<!-- END results/a/table.md -->\nmore\n"
    other = "<!-- BEGIN results/b/table.md -->\n| b |\n<!-- END results/b/table.md -->\n"
    document.write_text(before + other)
    assert splice(document, "results/a/table.md", "| new |\n| rows |\n")
    expected = before.replace("| old |", "| new |\n| rows |") + other
    assert document.read_text() == expected
    assert splice(document, "results/a/table.md", "| new |\n| rows |")  # again: the same document
    assert document.read_text() == expected
    assert not splice(document, "results/c/table.md", "| c |")  # no markers: untouched
    assert document.read_text() == expected


def test_splice_without_out_is_refused_in_one_line(tmp_path):
    run = write_run(tmp_path / "s1", "supervised", 1, [0.8, 0.9])
    document = tmp_path / "RESULTS.md"
    document.write_text("<!-- BEGIN None -->\n<!-- END None -->\n")  # what a nameless splice would have matched
    result = subprocess_run("summarize.py", run, "--splice", document, cwd=tmp_path)
    assert result.returncode == 2 and "error: --splice needs --out" in result.stderr
    assert document.read_text() == "<!-- BEGIN None -->\n<!-- END None -->\n"


def test_per_seed_table_gives_each_runs_mean_under_its_seed(tmp_path):
    runs = [
        write_run(tmp_path / "s1", "supervised", 1, [0.8, 0.9, math.nan]),  # 85.00: NaN left out
        write_run(tmp_path / "s2", "supervised", 2, [0.7, 0.6, 0.65]),  # 65.00
        write_run(tmp_path / "u2", "uamt_unlabel", 2, [0.9, 0.8, 0.7]),  # 80.00; no seed 1
    ]
    table = per_seed_table(group_runs(load_run(p) for p in runs)).splitlines()
    assert table[0] == "| group | seed 1 | seed 2 |"
    assert table[2:] == ["| `supervised:16` | 85.00 | 65.00 |", "| `uamt_unlabel:16` | – | 80.00 |"]


def test_load_run_reads_the_lcc_test_beside_the_plain_one(tmp_path):
    run = write_run(tmp_path / "r", "supervised", 1, [0.8, 0.9])
    with pytest.raises(DataError, match=r"test_iter_300_lcc/metrics.csv: missing; .*--iteration 300 --postprocess lcc"):
        load_run(run, postprocess="lcc")
    (run / "test_iter_300_lcc").mkdir()
    (run / "test_iter_300_lcc" / "metrics.csv").write_text(
        (run / "test_iter_300" / "metrics.csv").read_text().replace("case0,0.8", "case0,0.85")
    )
    assert load_run(run).mean("dice") == pytest.approx(0.85)
    assert load_run(run, postprocess="lcc").mean("dice") == pytest.approx(0.875)


def test_k_class_runs_get_a_column_per_structure(tmp_path):
    """CAMUS-like runs (K = 4): besides the means over the structures, each structure's Dice and 95HD as mean ± std
    over seeds of the per-run means; a 2-class run in the same table shows none there."""
    names = [*METRICS, *(f"{m}_{c}" for c in (1, 2, 3) for m in METRICS)]
    for seed, shift in ((1, 0.0), (2, 0.1)):
        run = tmp_path / f"k4_{seed}"
        write_run(run, "supervised", seed, [0.5, 0.5], labelled=40, patch_size=[112, 112])
        rows = ["case," + ",".join(names)]
        for i in range(2):
            value = {"dice_1": 0.9 + shift, "dice_2": 0.6 + shift * i, "dice_3": 0.3, "hd95_1": 4.0 + i, "hd95_2": 8.0}
            rows.append(f"case{i}," + ",".join(str(value.get(n, 0.5)) for n in names))
        (run / "test_iter_300" / "metrics.csv").write_text("\n".join(rows) + "\n")
    write_run(tmp_path / "binary", "uamt_unlabel", 1, [0.7, 0.8], patch_size=[112, 112])
    runs = [load_run(tmp_path / n) for n in ("k4_1", "k4_2", "binary")]
    table = results_table(group_runs(runs)).splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    k4 = dict(zip(header, [c.strip() for c in table[2].strip("|").split("|")]))
    binary = dict(zip(header, [c.strip() for c in table[3].strip("|").split("|")]))
    assert header.index("Dice 1 (%)") < header.index("Dice 3 (%)") < header.index("95HD 1 (px)") < header.index("seeds")
    # per-run means: dice_1 90 and 100 -> 95 ± 7.07; dice_2 (60, 60) and (60, 70) -> 60, 65 -> 62.5 ± 3.54
    assert (
        k4["Dice 1 (%)"] == "95.00 ± 7.07" and k4["Dice 2 (%)"] == "62.50 ± 3.54" and k4["Dice 3 (%)"] == "30.00 ± 0.00"
    )
    assert k4["95HD 1 (px)"] == "4.50 ± 0.00" and k4["95HD 2 (px)"] == "8.00 ± 0.00"
    assert binary["Dice 1 (%)"] == "–" and binary["Dice (%)"] == "75.00"


def test_log_means_averages_each_window_of_the_logged_values(tmp_path):
    """tools/log_means.py reads the loop's log.txt lines; window means against a hand computation."""
    from tools import log_means

    lines = [f"[12:00:00.000] iteration {i}: lr 0.01000, unimatch/mask_ratio {i / 10:.5f}" for i in range(1, 6)]
    (tmp_path / "log.txt").write_text("[12:00:00.000] {'seed': 1}\n" + "\n".join(lines) + "\n")
    values = log_means.logged(tmp_path)
    assert sorted(values) == [1, 2, 3, 4, 5] and values[3]["lr"] == 0.01
    means = log_means.window_means(values, "unimatch/mask_ratio", 2)
    assert [(a, b) for a, b, _ in means] == [(1, 2), (3, 4), (5, 5)]
    assert [m for _, _, m in means] == pytest.approx([0.15, 0.35, 0.5])


def write_metrics(folder, rows, iterations=10):
    """A finished run whose metrics.csv holds `rows` (case -> {metric: value}), the other metrics 0.5."""
    folder.mkdir(parents=True)
    info = {"method": "supervised", "labelled": 8, "unlabelled": 0, "seed": 1, "iterations": iterations}
    (folder / "run.json").write_text(json.dumps({**info, "train_wall_s": 1.0}))
    test = folder / f"test_iter_{iterations}"
    test.mkdir()
    lines = ["case," + ",".join(METRICS)]
    lines += [f"{case}," + ",".join(str(values.get(m, 0.5)) for m in METRICS) for case, values in rows.items()]
    (test / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_compare_differences_medians_and_case_selection(tmp_path):
    """tools/compare.py's median, difference of means (NaN left out of each mean) and --cases / --leave_out, against
    hand computations."""
    from tools.compare import Pooled, difference_line, mean_differences

    nan = math.nan
    write_metrics(tmp_path / "a", {"c0": {"dice": 0.8, "hd95": 2.0}, "c1": {"dice": 0.6, "hd95": nan},
                                   "c2": {"dice": 0.9, "hd95": 4.0}})  # fmt: skip
    write_metrics(tmp_path / "b", {"c0": {"dice": 0.7, "hd95": 3.0}, "c1": {"dice": 0.7, "hd95": 5.0},
                                   "c2": {"dice": 0.4, "hd95": 7.0}})  # fmt: skip
    a, b = Pooled(tmp_path, "a"), Pooled(tmp_path, "b")
    assert a.median("dice") == pytest.approx(0.8) and b.median("hd95") == pytest.approx(5.0)
    differences = mean_differences(a, b)
    # Dice in percent: (0.8 + 0.6 + 0.9) / 3 - (0.7 + 0.7 + 0.4) / 3 = 0.5 / 3; 95HD (2 + 4) / 2 - (3 + 5 + 7) / 3 = -2
    assert differences["dice"] == pytest.approx(100 * 0.5 / 3) and differences["hd95"] == pytest.approx(-2.0)
    assert differences["recall"] == pytest.approx(0.0)
    assert "dice +16.67" in difference_line("a", a, b, "b") and "hd95 -2.00" in difference_line("a", a, b, "b")
    # Pooled over two runs: each case's metrics averaged first, (0.8 + 0.7) / 2, (0.6 + 0.7) / 2, (0.9 + 0.4) / 2
    assert Pooled(tmp_path, "a,b").median("dice") == pytest.approx(0.65)
    assert Pooled(tmp_path, "a").select(cases=["c1"]).mean("dice") == pytest.approx(0.6)
    assert Pooled(tmp_path, "a").select(leave_out=["c1"]).median("dice") == pytest.approx(0.85)
    with pytest.raises(SystemExit):
        Pooled(tmp_path, "a").select(leave_out=["c9"])


def test_log_summary_averages_every_scalar_over_equal_windows_and_the_first_and_last_tenth(tmp_path):
    """tools/log_summary.py on a hand-written log.txt of 25 iterations: a = i at every iteration, b = 2 i from
    iteration 11 (a later stage's scalar); window means against hand computations."""
    from tools import log_summary

    lines = ["[12:00:00.000] {'seed': 1}", "[12:00:00.000] resumed from iter_10.pth at iteration 10"]
    for i in range(1, 26):
        lines.append(f"[12:00:00.000] iteration {i}: a {i:.5f}" + (f", b {2 * i:.5f}" if i > 10 else ""))
    (tmp_path / "log.txt").write_text("\n".join(lines) + "\n")
    out = log_summary.write_summary(tmp_path)
    assert out == tmp_path / "log_summary.json"
    written = json.loads(out.read_text())
    # 10 equal windows of ceil(25 / 10) = 3 iterations: 1-3, 4-6, ..., 22-24, and 25 alone; the tenths 1-3 and 23-25
    assert written["iterations"] == 25 and written["window"] == 3
    assert written["first_10_percent"] == [1, 3] and written["last_10_percent"] == [23, 25]
    a, b = written["scalars"]["a"], written["scalars"]["b"]
    assert [w[:2] for w in a["windows"]] == [[1, 3], [4, 6], [7, 9], [10, 12], [13, 15], [16, 18], [19, 21],
                                             [22, 24], [25, 25]]  # fmt: skip
    assert [w[2] for w in a["windows"]] == pytest.approx([2, 5, 8, 11, 14, 17, 20, 23, 25])
    assert a["first_10_percent"] == pytest.approx(2) and a["last_10_percent"] == pytest.approx(24)
    # b: (22 + 24) / 2 over 10-12 (logged from 11), then 2 x each window's middle; never in the first tenth
    assert [w[2] for w in b["windows"]] == pytest.approx([23, 28, 34, 40, 46, 50])
    assert b["windows"][0][:2] == [10, 12] and b["first_10_percent"] is None
    assert b["last_10_percent"] == pytest.approx(48)
    # --window 10: 1-10, 11-20, 21-25
    wide = log_summary.summary(tmp_path, window=10)["scalars"]["a"]["windows"]
    assert wide == [[1, 10, pytest.approx(5.5)], [11, 20, pytest.approx(15.5)], [21, 25, pytest.approx(23)]]


def test_run_table_keeps_the_log_summary_only_where_the_run_has_its_log(tmp_path):
    """log_summary.json is kept beside run.json when the run has log.txt; results without it still count as done."""
    from tools import run_table

    names = ("run.json", "test_iter_5/test.json", "test_iter_5/metrics.csv")
    for run in (tmp_path / "model" / "logged", tmp_path / "model" / "old"):
        (run / "test_iter_5").mkdir(parents=True)
        for name in names:
            (run / name).write_text(name)
    (tmp_path / "model" / "logged" / "log.txt").write_text("[12:00:00.000] iteration 1: loss 0.50000\n")
    run_table.keep_results(tmp_path / "model" / "logged", tmp_path / "results" / "logged", 5)
    run_table.keep_results(tmp_path / "model" / "old", tmp_path / "results" / "old", 5)
    kept = json.loads((tmp_path / "results" / "logged" / "log_summary.json").read_text())
    assert kept["scalars"]["loss"]["windows"] == [[1, 1, 0.5]]
    assert not (tmp_path / "results" / "old" / "log_summary.json").exists()
    assert run_table.has_results(tmp_path / "results" / "old", 5) and run_table.has_results(
        tmp_path / "results" / "logged", 5
    )
