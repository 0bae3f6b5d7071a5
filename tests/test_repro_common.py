"""The repro framework: output layout, the results document and the CLI's errors.

A fake experiment module (no training) stands in for the real ones, whose own smoke tests
live beside this file.
"""

import json
import sys
import types

import pytest

import seemrl.repro
from seemrl import cli
from seemrl.repro import _common


def _fake_module(name: str, unavailable: bool = False) -> types.ModuleType:
    mod = types.ModuleType(f"seemrl.repro.{name}")
    mod.TITLE = f"{name} title"
    mod.SCALES = {"smoke": {"points": 3}, "cpu": {"points": 30}, "paper": {"points": 300}}

    def run(ctx):
        if unavailable:
            raise _common.ExperimentUnavailable("no data for it here")
        plt = _common.plotting.pyplot()
        fig, ax = plt.subplots()
        xs = list(range(ctx.params["points"]))
        ax.plot(xs, [x * x for x in xs])
        ctx.save_figure(fig, "curve.png")
        total = sum(x * x for x in xs)
        return _common.Outcome({"sum_of_squares": total}, f"The sum is {total}.")

    mod.run = run
    return mod


@pytest.fixture
def fake_experiments(monkeypatch):
    names = ("alpha", "beta")
    for name, unavailable in (("alpha", False), ("beta", True)):
        monkeypatch.setitem(sys.modules, f"seemrl.repro.{name}", _fake_module(name, unavailable))
    monkeypatch.setattr(seemrl.repro, "EXPERIMENTS", names)
    monkeypatch.setattr(_common, "EXPERIMENTS", names)
    return names


def test_run_experiment_writes_results_section_and_figure(fake_experiments, tmp_path):
    record = _common.run_experiment("alpha", "smoke", tmp_path, data_dir=tmp_path / "data",
                                    progress=False)
    folder = tmp_path / "alpha"
    saved = json.loads((folder / "results.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["params"] == {"points": 3}
    assert saved["results"]["sum_of_squares"] == sum(x * x for x in range(3))
    assert saved["command"] == "seemrl repro alpha --scale smoke"
    assert saved["figures"] == ["curve.png"] and (folder / "curve.png").stat().st_size > 0
    section = (folder / "section.md").read_text()
    assert section.startswith("## alpha: alpha title")
    assert "`seemrl repro alpha --scale smoke`" in section
    assert "](curve.png)" in section and "The sum is 5." in section


def test_run_all_writes_document_with_figures_and_unavailable(fake_experiments, tmp_path):
    doc = tmp_path / "docs" / "RESULTS.md"
    result = _common.run_all("smoke", tmp_path / "out", doc, data_dir=tmp_path / "data",
                             progress=False)
    assert set(result["records"]) == {"alpha"}
    assert result["unavailable"] == {"beta": "no data for it here"}
    text = doc.read_text()
    assert "`seemrl repro all --scale smoke`" in text
    assert "](results/alpha-curve.png)" in text
    assert (doc.parent / "results" / "alpha-curve.png").is_file()
    assert "## beta" in text and "Not run: no data for it here" in text


def test_cli_repro_unavailable_exits_2_and_list_works(fake_experiments, tmp_path, capsys):
    assert cli.main(["repro", "beta", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "no data for it here" in capsys.readouterr().err
    assert cli.main(["repro", "list"]) == 0
    assert "alpha title" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["repro", "nonsense"], "invalid choice"),
    (["repro", "surge", "--scale", "huge"], "invalid choice"),
    (["repro", "surge", "--workers", "0"], "--workers must be >= 1"),
])
def test_cli_repro_bad_input_is_one_line_exit_2(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        code = cli.main([*argv, "--out", str(tmp_path / "o")])
        raise SystemExit(code)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_collect_assembles_document_without_training(fake_experiments, tmp_path, monkeypatch):
    out, doc = tmp_path / "out", tmp_path / "docs" / "RESULTS.md"
    _common.run_experiment("alpha", "cpu", out, data_dir=tmp_path / "data", progress=False)
    with pytest.raises(_common.ExperimentUnavailable):
        _common.run_experiment("beta", "cpu", out, data_dir=tmp_path / "data", progress=False)

    def no_training(ctx):
        raise AssertionError("collect must not run experiments")

    monkeypatch.setattr(sys.modules["seemrl.repro.alpha"], "run", no_training)
    assert cli.main(["repro", "all", "--scale", "cpu", "--collect", "--out", str(out),
                     "--doc", str(doc), "--no-progress"]) == 0
    text = doc.read_text()
    assert "`seemrl repro all --scale cpu --collect`" in text
    assert "`seemrl repro alpha --scale cpu`" in text and "](results/alpha-curve.png)" in text
    assert "Not run: no data for it here" in text
    # At another scale nothing was run: each experiment says how to run it.
    assert cli.main(["repro", "all", "--scale", "smoke", "--collect", "--out", str(out),
                     "--doc", str(doc), "--no-progress"]) == 0
    assert "no results at scale smoke yet (run `seemrl repro alpha --scale smoke`)" in \
        doc.read_text()


def test_collect_keeps_the_sections_it_has_no_runs_for(fake_experiments, tmp_path):
    # A document made where alpha's runs were; collected again where only beta's exist (here:
    # beta unavailable, alpha's folder gone): alpha's section survives, at the same scale only.
    out, doc = tmp_path / "out", tmp_path / "docs" / "RESULTS.md"
    _common.run_experiment("alpha", "cpu", out, data_dir=tmp_path / "data", progress=False)
    _common.run_all("cpu", out, doc, collect=True)
    first = doc.read_text()
    import shutil

    shutil.rmtree(out / "alpha")
    _common.run_all("cpu", out, doc, collect=True)
    text = doc.read_text()
    alpha = first[first.index("## alpha"):first.index("## beta")]
    assert alpha in text and "The sum is" in text
    _common.run_all("cpu", out, doc, collect=True)  # kept again: the document is unchanged
    assert doc.read_text() == text
    _common.run_all("smoke", out, doc, collect=True)  # another scale: not kept
    assert "The sum is" not in doc.read_text()


def test_report_lays_out_setup_measurements_findings_notes():
    from seemrl.repro import _report as rp

    report = rp.Report("What ran.", claim="The claim.")
    report.note("A caveat.")                      # notes come last whatever the call order
    report.finding("Number 3 against the paper's 3.", rp.HOLDS)
    report.table(["a", "b"], [[1, rp.fmt_as(None, ".2f")]], caption="The table:")
    report.heading("More")
    report.finding("An observation.")
    report.details("Per seed", ["seed"], [[0]])
    assert report.markdown() == "\n\n".join([
        "What ran.", "The table:", "| a | b |\n|---|---|\n| 1 | — |", "### More",
        "**Against the paper.**", "The claim.",
        "- **Holds.** Number 3 against the paper's 3.\n- An observation.", "A caveat.",
        "<details><summary>Per seed</summary>\n\n| seed |\n|---|\n| 0 |\n\n</details>"])
    assert rp.fmt_as(float("nan"), ".1f") == "—" and rp.fmt_as(1234.5, ",.0f") == "1,234"
    assert "**Against the theory and the paper.**" in rp.Report(
        "x", against="the theory and the paper").markdown()


def test_a_dataset_seemrl_cannot_make_here_is_named_not_made(tmp_path, monkeypatch):
    from seemrl.antmaze import controller
    from seemrl.repro._common import Context

    monkeypatch.setattr(controller, "SHIPPED", tmp_path / "no-controller.npz")
    ctx = Context(name="surge", scale="smoke", params={}, out=tmp_path / "out",
                  data_dir=tmp_path / "data")
    assert ctx.unavailable("hopper-medium", 2_000) is None  # its policy is shipped
    why = ctx.unavailable("antmaze-medium-play", 2_000)
    assert why is not None and why.startswith("antmaze-medium-play:") and "data list" in why
    from seemrl import behaviour

    made = behaviour.dataset_path("antmaze-medium-play", tmp_path / "data", 2_000)
    made.parent.mkdir(parents=True)
    made.write_bytes(b"")  # a file on disk is used as it is
    assert ctx.unavailable("antmaze-medium-play", 2_000) is None
    assert not (tmp_path / "out").exists()
