"""Trainer config (validated on load, paper defaults), audit policies, export reading."""

import json

import pytest

from curator.errors import CuratorError
from trainer.config import TrainConfig, config_from_dict, load_config, parse_set, resume_mismatch
from trainer.data import Verdicts, apply_policy, load_export
from trainer.synthetic import write_export


def test_defaults_are_the_paper_recipe():
    c = TrainConfig()
    assert (c.learning_rate, c.adam_beta1, c.adam_beta2, c.weight_decay, c.adam_epsilon) == (9.6e-7, 0.9, 0.999, 0.01, 1e-8)
    assert (c.lr_scheduler, c.lr_warmup_steps, c.beta) == ("linear", 200, 2000.0)
    assert (c.train_batch_size, c.gradient_accumulation_steps, c.sft_epochs, c.dpo_epochs) == (4, 4, 1, 4)
    assert c.optimizer == "adamw" and c.latent == "mean"


@pytest.mark.parametrize("values, needle", [
    ({"bta": 1}, "unknown key(s) bta"),
    ({"beta": 0}, "beta=0"),
    ({"uncond_prob": 1.5}, "uncond_prob=1.5"),
    ({"optimizer": "sgd"}, "optimizer='sgd' is not one of"),
    ({"train_batch_size": 0}, "train_batch_size=0"),
    ({"learning_rate": "fast"}, "learning_rate='fast' is not a number"),
    ({"gradient_checkpointing": "yes"}, "gradient_checkpointing='yes' is not true/false"),
    ({"sft_epochs": 0, "dpo_epochs": 0}, "nothing to train"),
])
def test_bad_values_are_named(values, needle):
    with pytest.raises(CuratorError) as err:
        config_from_dict(values)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_file_then_set_then_explicit(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"beta": 500, "seed": 3, "mixed_precision": "bf16"}))
    c = load_config(f, ["beta=1000", "gradient_checkpointing=true"], out="o", seed=None)
    assert (c.beta, c.seed, c.mixed_precision, c.gradient_checkpointing, c.out) == (1000.0, 3, "bf16", True, "o")
    t = tmp_path / "c.toml"
    t.write_text("optimizer = 'adafactor'\nmax_steps = 7\n")
    assert load_config(t).optimizer == "adafactor"
    bad = tmp_path / "c.yaml"
    bad.write_text("beta: 1")
    with pytest.raises(CuratorError, match=".json or .toml"):
        load_config(bad)
    with pytest.raises(CuratorError, match="expected an integer"):
        parse_set("max_steps=two")
    with pytest.raises(CuratorError, match="unknown key"):
        parse_set("nope=1")


def test_resume_mismatch_names_the_recipe_fields():
    a = TrainConfig(out="x")
    assert resume_mismatch(a, a.replace(max_steps=10, log_every=1)) == []
    assert [m.split(" ")[0] for m in resume_mismatch(a, a.replace(beta=10.0, seed=1))] == ["beta", "seed"]


@pytest.mark.parametrize("policy, v, want", [
    ("ignore", Verdicts(disagree=3), "keep"),
    ("drop-rejected", None, "keep"),
    ("drop-rejected", Verdicts(agree=2, both_bad=1), "drop"),
    ("drop-rejected", Verdicts(agree=2, both_good=1), "keep"),
    ("human-winner", Verdicts(agree=1, disagree=2), "swap"),
    ("human-winner", Verdicts(agree=2, disagree=1), "keep"),
    ("human-winner", Verdicts(agree=1, both_bad=2), "drop"),
    ("majority", Verdicts(agree=2, disagree=1), "keep"),
    ("majority", Verdicts(agree=1, disagree=1), "drop"),
    ("majority", Verdicts(), "keep"),
])
def test_audit_policies(policy, v, want):
    assert apply_policy(policy, v) == want


def test_export_in_the_published_schema(tmp_path):
    path = write_export(tmp_path / "alpaca", 3)
    pairs = load_export(tmp_path / "alpaca")  # a folder: every parquet under it
    assert [p.strategy for p in pairs.pairs] == ["1.1", "1.2", "2"]
    assert pairs.pairs[0].prompt.startswith("a dog barks")
    shas = {p.chosen_sha for p in pairs.pairs}
    got = {sha for sha, data, _ in pairs.clips(shas)}
    assert got == shas
    assert len(pairs.source_hash) == 64 and load_export(path).source_hash == pairs.source_hash


def test_export_missing_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["x"], "chosen": [b"x"]}), tmp_path / "t.parquet")
    with pytest.raises(CuratorError, match="missing column"):
        load_export(tmp_path / "t.parquet")
    with pytest.raises(CuratorError, match="no .parquet files"):
        load_export(tmp_path / "nothing") if (tmp_path / "nothing").mkdir() is None else None
