"""``jaxnn bench --sklearn`` (jaxnn/bench/sklearn_fits.py): its pieces, and one tiny round.

Nothing here times anything worth reading; the figures come from the command itself.
"""

import json
import sys

import pytest

from jaxnn.bench import sklearn_fits

pytest.importorskip("sklearn")


def _fit(first, warm, score, n_iter=30):
    return {
        "first_fit_s": first,
        "fit_s": warm,
        "score": score,
        "n_iter": n_iter,
        "process_wall_s": first + warm + 5.0,
    }


def _grid(wall, fit, best):
    return {
        "process_wall_s": wall,
        "fit_s": fit,
        "best_score": best,
        "best_params": {"mlpclassifier__alpha": 0.01, "mlpclassifier__learning_rate_init": 0.003},
    }


def fake_rounds() -> list[dict]:
    """Three rounds: jaxnn fast on digits, slow on wine; its grid fast at n_jobs=1 only."""
    rounds = []
    for i, k in enumerate((1.0, 2.0, 3.0)):
        rounds.append(
            {
                "fits": {
                    "digits": {
                        "sklearn": _fit(1.0 * k, 1.0 * k, 0.97),
                        "jaxnn-cold": _fit(3.0 * k, 0.2 * k, 0.98),
                        "jaxnn-cached": _fit(0.5 * k, 0.4 * k, 0.98),
                    },
                    "wine": {
                        "sklearn": _fit(0.1, 0.1, 1.0),
                        "jaxnn-cold": _fit(3.0, 0.08, 0.98),
                        "jaxnn-cached": _fit(0.5, 0.08, 0.98),
                    },
                },
                "grid": {
                    "sklearn n_jobs=1": _grid(50.0 + i, 45.0, 0.95),
                    "jaxnn-cold n_jobs=1": _grid(20.0 + i, 15.0, 0.96),
                    "jaxnn-cached n_jobs=1": _grid(12.0 + i, 9.0, 0.96),
                    "sklearn n_jobs=2": _grid(30.0, 25.0, 0.95),
                    "jaxnn-cold n_jobs=2": _grid(30.0, 25.0, 0.96),
                    "jaxnn-cached n_jobs=2": _grid(14.0, 10.0, 0.94),
                },
                "seconds": 100.0 + i,
            }
        )
    return rounds


def fake_report() -> dict:
    return {
        "mode": "sklearn",
        "settings": {**sklearn_fits.DEFAULTS, "datasets": ["digits", "wine"]},
        "machine": {"sklearn": "9.9.9"},
        "load_average": {"start": [1.25, 2.0, 3.0], "end": [4.0, 5.0, 6.0]},
        "rounds": fake_rounds(),
        "summary": sklearn_fits.summarise(fake_rounds()),
    }


def test_summary_gives_medians_pooled_warm_fits_and_ratios():
    summary = sklearn_fits.summarise(fake_rounds())
    digits = summary["fits"]["digits"]
    assert digits["sklearn_fit_s"] == 2.0  # the median of 1, 2, 3
    # jaxnn's warm fit: the median of both processes' second fits, 0.2k and 0.4k, k = 1..3
    assert digits["jaxnn_warm_fit_s"] == pytest.approx(0.5)  # of .2 .4 .4 .6 .8 1.2
    assert digits["jaxnn_first_fit_empty_cache_s"] == 6.0
    assert digits["jaxnn_first_fit_filled_cache_s"] == 1.0
    assert digits["ratios"]["warm fit"] == pytest.approx(0.25)
    assert digits["ratios"]["first fit, empty cache"] == pytest.approx(3.0)
    assert digits["score_difference"] == pytest.approx(0.01)
    assert summary["fits"]["wine"]["ratios"]["warm fit"] == pytest.approx(0.8)
    grid = summary["grid"]
    assert grid["sklearn n_jobs=1"]["process_wall_s"] == 51.0
    assert "ratios" not in grid["sklearn n_jobs=1"]
    assert grid["jaxnn-cached n_jobs=1"]["ratios"]["process_wall_s"] == pytest.approx(13 / 51)
    assert grid["jaxnn-cached n_jobs=1"]["ratios"]["fit_s"] == pytest.approx(9 / 45)
    assert grid["jaxnn-cached n_jobs=2"]["best_score_difference"] == pytest.approx(-0.01)
    assert summary["targets"] == {
        "digits warm fit": True,  # 0.25x, a better score
        "wine warm fit": False,  # 0.8x and a worse score
        "grid jaxnn-cold n_jobs=1": True,  # 21 / 51 s
        "grid jaxnn-cached n_jobs=1": True,
        "grid jaxnn-cold n_jobs=2": False,  # as slow as scikit-learn
        "grid jaxnn-cached n_jobs=2": False,  # fast enough, but a worse best_score_
    }


@pytest.mark.parametrize(("below", "met"), [(1e-8, True), (1.5e-6, True), (1e-3, False)])
def test_a_score_within_float32_rounding_counts_as_equal(below, met):
    """jaxnn trains in float32: an R^2 1e-8 lower, or a mean fold accuracy 1.5e-6 lower
    (the same examples right, spread over folds of 360 and 359), is the same score; a
    thousandth lower (one example of a thousand) is not."""
    rounds = fake_rounds()
    for r in rounds:
        r["fits"]["digits"]["jaxnn-cold"]["score"] = 0.97 - below
        r["grid"]["jaxnn-cached n_jobs=1"]["best_score"] = 0.95 - below
    targets = sklearn_fits.summarise(rounds)["targets"]
    assert targets["digits warm fit"] is met
    assert targets["grid jaxnn-cached n_jobs=1"] is met


def test_markdown_has_every_median_ratio_target_and_round():
    table = sklearn_fits.markdown(fake_report())
    assert "scikit-learn 9.9.9: medians of 3 rounds" in table
    assert "| digits | 2.000 s | 0.500 s | 0.25 | 6.00 s / 1.00 s | 0.9700 | 0.9800 |" in table
    assert "| jaxnn-cached n_jobs=1 | 13.0 s | 0.25 | 9.0 s | 0.20 | 0.9600 |" in table
    assert "| sklearn n_jobs=2 | 30.0 s | - | 25.0 s | - | 0.9500 |" in table
    assert "alpha=0.01, learning_rate_init=0.003" in table
    assert "- wine warm fit: not met" in table and "- digits warm fit: met" in table
    assert table.count("\n| 2 | ") == 3  # round 2: two datasets' fits and the grid's row
    assert "| 3 | digits | 3.00 / 3.000 | 9.00 / 0.600 | 1.50 / 1.200 |" in table
    assert "at the start: 1.2, 2.0, 3.0; at the end: 4.0, 5.0, 6.0" in table
    assert "| 102 |" in table  # the round's seconds


def test_children_get_the_settings_asked_for():
    settings = {**sklearn_fits.DEFAULTS}
    assert sklearn_fits.DEFAULTS["epochs"] == 30 and sklearn_fits.DEFAULTS["cv"] == 5
    digits = sklearn_fits._fit_settings(settings, "digits")
    diabetes = sklearn_fits._fit_settings(settings, "diabetes")
    assert (digits["task"], digits["epochs"]) == ("classification", 30)
    assert (diabetes["task"], diabetes["epochs"]) == ("regression", settings["regression_epochs"])
    assert digits["hidden"] == [100] and digits["batch_size"] == 32
    grid = sklearn_fits._grid_settings(settings, 2)
    assert grid["n_jobs"] == 2 and grid["hidden"] == [64] and grid["epochs"] == 30
    assert sklearn_fits.grid_contenders((1, 2)) == [
        "sklearn n_jobs=1",
        "jaxnn-cold n_jobs=1",
        "jaxnn-cached n_jobs=1",
        "sklearn n_jobs=2",
        "jaxnn-cold n_jobs=2",
        "jaxnn-cached n_jobs=2",
    ]


def test_run_sklearn_refuses_bad_settings_before_starting_anything(tmp_path):
    with pytest.raises(ValueError, match=r"unknown settings \['epoch'\]"):
        sklearn_fits.run_sklearn(1, workdir=tmp_path, epoch=3)
    with pytest.raises(ValueError, match=r"unknown datasets \['iris'\]"):
        sklearn_fits.run_sklearn(1, workdir=tmp_path, datasets=("wine", "iris"))
    with pytest.raises(ValueError, match="rounds must be >= 1, got 0"):
        sklearn_fits.run_sklearn(0, workdir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def _exec(script, settings, monkeypatch, capsys) -> dict:
    """A child script, run in this process with scikit-learn's estimators."""
    monkeypatch.setattr(sys, "argv", ["-c", json.dumps({**settings, "library": "sklearn"})])
    exec(compile(script, "<child>", "exec"), {"__name__": "__main__"})
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_fit_script_splits_scales_and_forces_the_epochs(monkeypatch, capsys):
    settings = {**sklearn_fits._fit_settings(sklearn_fits.DEFAULTS, "wine"), "epochs": 3}
    out = _exec(sklearn_fits.FIT, settings, monkeypatch, capsys)
    assert (out["train_rows"], out["test_rows"]) == (133, 45)  # wine's 178 rows, 25% held out
    assert out["n_iter"] == 3  # every epoch run, none stopped early
    assert 0.5 < out["score"] <= 1.0 and out["first_fit_s"] > 0 and out["fit_s"] > 0
    settings = {**sklearn_fits._fit_settings(sklearn_fits.DEFAULTS, "diabetes"), "epochs": 2}
    out = _exec(sklearn_fits.FIT, settings, monkeypatch, capsys)
    assert (out["train_rows"], out["n_iter"]) == (331, 2) and -5 < out["score"] < 1


def test_grid_script_reports_the_search(monkeypatch, capsys):
    settings = {
        **sklearn_fits._grid_settings(sklearn_fits.DEFAULTS, 1),
        "hidden": [4],
        "epochs": 2,
        "cv": 2,
        "grid": {"mlpclassifier__alpha": [1e-4, 10.0]},
    }
    out = _exec(sklearn_fits.GRID, settings, monkeypatch, capsys)
    assert set(out["best_params"]) == {"mlpclassifier__alpha"}
    assert out["best_params"]["mlpclassifier__alpha"] in (1e-4, 10.0)
    assert 0.1 < out["best_score"] <= 1.0 and out["fit_s"] > 0


# --- the command line --------------------------------------------------------------------


def test_jaxnn_bench_sklearn_writes_json_and_markdown(tmp_path, capsys, monkeypatch):
    from jaxnn import cli

    asked = []

    def fake(rounds):
        asked.append(rounds)
        return fake_report()

    monkeypatch.setattr(sklearn_fits, "run_sklearn", fake)
    js, md = tmp_path / "s.json", tmp_path / "s.md"
    assert cli.main(["bench", "--sklearn", "--json", str(js), "--markdown", str(md)]) == 0
    assert capsys.readouterr().out == md.read_text() == sklearn_fits.markdown(fake_report())
    assert json.loads(js.read_text())["summary"]["targets"]["digits warm fit"] is True
    assert cli.main(["bench", "--sklearn", "--rounds", "2", "--json", str(js)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert cli.main(["bench", "--sklearn", "--rounds", "2", "--json", str(js), "--force"]) == 0
    missing = tmp_path / "no-such-dir" / "s.json"
    assert cli.main(["bench", "--sklearn", "--json", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "its directory does not exist" in err and err.count("\n") == 1
    assert not missing.parent.exists()
    assert asked == [3, 2]  # 3 rounds by default; none run for the refused calls


def test_jaxnn_bench_sklearn_refuses_bad_flags(capsys, monkeypatch):
    from jaxnn import cli

    monkeypatch.setattr(sklearn_fits, "run_sklearn", lambda rounds: pytest.fail("ran"))
    assert cli.main(["bench", "--sklearn", "--rounds", "0"]) == 2
    assert capsys.readouterr().err == "jaxnn: error: rounds must be >= 1, got 0\n"
    assert cli.main(["bench", "--sklearn", "--time-to-accuracy"]) == 2
    assert "--sklearn takes neither" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--sklearn" in text and "3 for --time-to-accuracy and --sklearn" in text


# --- one tiny round, every contender in its own process (tens of seconds) -----------------

TINY = {
    "datasets": ("wine", "diabetes"),
    "hidden": (8,),
    "epochs": 2,
    "regression_epochs": 3,
    "grid_hidden": (8,),
    "grid_epochs": 2,
    "grid": {"mlpclassifier__alpha": [1e-4, 1e-2]},
    "cv": 3,  # folds of 1198 rows and the refit's 1797 share one padded program
    "n_jobs": (1,),
}


@pytest.mark.slow
def test_one_tiny_round_runs_every_contender(tmp_path):
    report = sklearn_fits.run_sklearn(1, workdir=tmp_path, **TINY)
    (measured,) = report["rounds"]
    assert list(measured["fits"]) == ["wine", "diabetes"]
    for dataset, epochs in (("wine", 2), ("diabetes", 3)):
        fits = measured["fits"][dataset]
        assert list(fits) == list(sklearn_fits.FIT_CONTENDERS)
        for name, f in fits.items():
            assert f["n_iter"] == epochs, (dataset, name)  # the same epochs, forced
            assert 0 < f["fit_s"] and f["first_fit_s"] + f["fit_s"] < f["process_wall_s"]
        # the same network, seed and data: jaxnn's two processes agree
        assert fits["jaxnn-cold"]["score"] == fits["jaxnn-cached"]["score"]
        # a filled cache: no compile in the first fit
        assert fits["jaxnn-cached"]["first_fit_s"] < fits["jaxnn-cold"]["first_fit_s"]
    assert 0.3 < measured["fits"]["wine"]["sklearn"]["score"] <= 1.0
    assert list(measured["grid"]) == sklearn_fits.grid_contenders((1,))
    for g in measured["grid"].values():
        assert 0 < g["fit_s"] < g["process_wall_s"] and 0.1 < g["best_score"] <= 1.0
    assert set(report["summary"]["targets"]) == {
        "wine warm fit",
        "diabetes warm fit",
        "grid jaxnn-cold n_jobs=1",
        "grid jaxnn-cached n_jobs=1",
    }
    assert report["machine"]["sklearn"] and report["machine"]["processor"]
    assert len(report["load_average"]["start"]) == 3 == len(report["load_average"]["end"])
    assert list(tmp_path.iterdir()) == []  # the caches are gone
    json.dumps(report)  # JSON-able
    assert "| 1 | wine |" in sklearn_fits.markdown(report)
