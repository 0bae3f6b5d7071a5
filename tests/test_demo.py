import json

import pytest

from seemrl.cli import main


def test_demo_end_to_end_small(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--data-dir", str(tmp_path / "data"), "--size",
                 "3000", "--fraction", "0.1", "--steps", "40", "--seeds", "0", "1",
                 "--eval-episodes", "1", "--no-progress"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert (out / "demo.png").stat().st_size > 10_000
    for run in ("td3", "td3-layernorm"):
        config = json.loads((out / run / "config.json").read_text())
        assert config["algo"]["bc_coef"] == 0.0
        assert config["algo"]["layer_norm"] == (run == "td3-layernorm")
        records = [json.loads(x) for x in (out / run / "metrics.jsonl").read_text().splitlines()]
        assert {r["seed"] for r in records} == {0, 1}
        assert any("seem/normalized" in r for r in records)
        evals = [r for r in records if "eval/normalized_score" in r]
        assert evals and all(1 <= r["eval/length_mean"] <= 1000
                             and 0.0 <= r["eval/terminated_frac"] <= 1.0 for r in evals)
    assert "LayerNorm" in stdout and "300 transitions" in stdout
    # A second demo never overwrites the first.
    code = main(["demo", "--out", str(out), "--data-dir", str(tmp_path / "data"), "--size",
                 "3000", "--fraction", "0.1", "--steps", "40", "--seeds", "0",
                 "--eval-episodes", "1", "--no-progress"])
    assert code == 0 and (tmp_path / "demo-2" / "demo.png").exists()


@pytest.mark.parametrize("argv, needle", [
    (["data", "make", "hopper-legendary"], "hopper-legendary"),
    (["data", "make", "hopper-medium", "--size", "0"], "size"),
    (["demo", "--fraction", "0"], "fraction"),
])
def test_bad_data_and_demo_options(argv, needle, tmp_path, capsys):
    code = main(argv + ["--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # refused before any dataset was made


def test_data_make_unwritable_dir(tmp_path, capsys):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the data folder should go")
    code = main(["data", "make", "hopper-random", "--size", "100", "--data-dir",
                 str(blocker / "sub")])
    err = capsys.readouterr().err
    assert code == 2 and "not_a_dir" in err and len(err.strip().splitlines()) == 1
