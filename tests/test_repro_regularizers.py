import json
import math

from seemrl import cli
from seemrl.repro import regularizers


def test_variants_cover_the_paper_ablation():
    paper = regularizers.variants(regularizers.SCALES["paper"])
    assert {"none", "layernorm", "layernorm-after", "weight-decay", "dropout", "batchnorm",
            "spectral-norm"} <= set(paper)
    sets = {tuple(v["options"]["ln_layers"]) for v in paper.values()
            if "ln_layers" in v["options"]}
    # With the "all layers" variant, the authors' sets {0}, {0,1}, {0,1,2}, {2}, {1,2}.
    assert sets == {(0,), (0, 1), (2,), (1, 2)}
    assert regularizers.SCALES["paper"]["critic_hidden"] == [256, 256, 256]


def test_smoke_writes_one_entry_per_variant(tmp_path):
    out = tmp_path / "out"
    assert cli.main(["repro", "regularizers", "--scale", "smoke", "--out", str(out),
                     "--data-dir", str(tmp_path / "data"), "--no-progress"]) == 0
    exp = out / "regularizers"
    record = json.loads((exp / "results.json").read_text())
    assert record["scale"] == "smoke"
    for fig in record["figures"]:
        assert (exp / fig).stat().st_size > 10_000
    assert len(record["figures"]) == 2  # the regularisers' curves and the summary
    runs = record["results"]["runs"]
    expected = regularizers.variants(regularizers.SCALES["smoke"])
    assert [r["variant"] for r in runs] == list(expected)
    for r in runs:
        assert r["n_seeds"] == 1 and 0.0 <= r["divergence_rate"] <= 1.0
        assert r["q_ceiling"] > 0
        seed = r["seeds"][0]
        assert seed["max_abs_q"] is not None and math.isfinite(seed["max_abs_q"])
        assert seed["final_seem"] is not None and -1.0 <= seed["final_seem"] <= 1.0
        assert seed["final_score"] is not None and math.isfinite(seed["final_score"])
        # Each run trained the critic it names (the options reached config.json).
        config = json.loads((exp / "runs" / f"hopper-medium-{r['variant']}" /
                             "config.json").read_text())
        for key, value in r["options"].items():
            assert config["algo"][key] == value
    section = (exp / "section.md").read_text()
    assert "Against the paper" in section and "spectral norm" in section
