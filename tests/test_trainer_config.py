"""Trainer config (validated on load, paper defaults), audit policies, export reading."""

import hashlib
import json

import pytest

from db.errors import CuratorError
from trainer.config import TrainConfig, config_from_dict, load_config, parse_set, resume_mismatch
from curator.verdicts import Verdicts
from trainer.data import apply_policy, load_export
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
    y = tmp_path / "c.yaml"
    y.write_text("# a YAML config\nbeta: 1000\nmixed_precision: bf16\ngradient_checkpointing: true\nreport_to: none\n")
    c = load_config(y, ["seed=4"])
    assert (c.beta, c.mixed_precision, c.gradient_checkpointing, c.seed) == (1000.0, "bf16", True, 4)
    bad = tmp_path / "c.ini"
    bad.write_text("beta=1")
    with pytest.raises(CuratorError, match=".json, .toml or .yaml"):
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


@pytest.mark.parametrize("text, needle", [
    ("beta: 1000\nlearnin_rate: 1e-5\n", "unknown key(s) learnin_rate"),
    ("tensorboard: true\n", "tensorboard: use report_to=tensorboard"),
    ("beta: [1, 2\n", "is not valid yaml"),
    ("- beta\n- 1\n", "expected a table"),
    ("report_to: neptune\n", "report_to='neptune' is not one of none, tensorboard, wandb, trackio, mlflow"),
])
def test_bad_yaml_is_one_line(tmp_path, text, needle):
    f = tmp_path / "c.yml"
    f.write_text(text)
    with pytest.raises(CuratorError) as err:
        load_config(f)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_help_lists_every_key_from_the_field_metadata():
    import dataclasses

    from typer.testing import CliRunner

    from trainer.cli import app
    from trainer.config import config_help

    text = config_help()
    lines = text.splitlines()
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert [ln.split(" ")[0] for ln in lines] == names  # one line per key, in field order
    by_name = dict(zip(names, lines))
    assert by_name["learning_rate"] == ("learning_rate (float, default 9.6e-07): peak learning rate "
                                        "(arXiv 2404.09956 §5.1)")
    assert "(bool, default true)" in by_name["precompute_reference"]
    assert by_name["report_to"].startswith("report_to (none|tensorboard|wandb|trackio|mlflow, default 'none')")
    assert "arXiv" not in by_name["out"]  # no paper section where the paper sets none
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"] in by_name[f.name]

    res = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "300"})
    assert res.exit_code == 0
    flat = " ".join(res.output.split())
    for line in lines:
        assert " ".join(line.split()) in flat, line


def test_checkpoint_pruning_and_latest(tmp_path):
    from trainer.run_folder import STATE_FILE, checkpoint_steps, latest_checkpoint, prune_checkpoints

    with pytest.raises(CuratorError, match="does not exist"):
        latest_checkpoint(tmp_path / "none")
    with pytest.raises(CuratorError, match="no checkpoint in"):
        latest_checkpoint(tmp_path)
    for k in (2, 10, 4, 6):
        (tmp_path / f"step-{k}").mkdir()
        (tmp_path / f"step-{k}" / STATE_FILE).write_text("{}")
    (tmp_path / "step-99").mkdir()  # no state file: not a checkpoint (a crash mid-write leaves .step-K.tmp)
    (tmp_path / ".step-12.tmp").mkdir()
    assert [k for k, _ in checkpoint_steps(tmp_path)] == [2, 4, 6, 10]
    assert latest_checkpoint(tmp_path).name == "step-10"  # numeric, not lexical order
    assert prune_checkpoints(tmp_path, 0) == []
    removed = prune_checkpoints(tmp_path, 2, keep=tmp_path / "step-2")  # the resumed-from one stays
    assert [p.name for p in removed] == ["step-4", "step-6"]
    assert [k for k, _ in checkpoint_steps(tmp_path)] == [2, 10]
    (tmp_path / "step-12").mkdir()
    (tmp_path / "step-12" / STATE_FILE).write_text("{}")
    assert [p.name for p in prune_checkpoints(tmp_path, 2)] == ["step-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".step-12.tmp", "step-10", "step-12", "step-99"]


def _offline(monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("as_dict", [True, False])
def test_datasets_folder_in_the_published_layout(tmp_path, monkeypatch, as_dict):
    from trainer.data import load_pairs
    from trainer.synthetic import write_datasets_folder

    _offline(monkeypatch)
    export = write_export(tmp_path / "e.parquet", 5, duration_s=0.1)
    folder = write_datasets_folder(export, tmp_path / "audio-alpaca", as_dict=as_dict)
    got, want = load_pairs(str(folder)), load_pairs(str(export))
    assert got.source == f"datasets:{folder}" and want.source.startswith("export:")
    assert [(p.prompt, p.chosen_sha, p.rejected_sha, p.strategy) for p in got.pairs] == \
        [(p.prompt, p.chosen_sha, p.rejected_sha, p.strategy) for p in want.pairs]
    assert got.source_hash == want.source_hash  # the same pairs: the cache and the reference terms are shared
    wanted = {got.pairs[1].chosen_sha, got.pairs[4].rejected_sha}
    streamed = {sha: data for sha, data, _ in got.clips(wanted)}
    assert set(streamed) == wanted and all(hashlib.sha256(d).hexdigest() == s for s, d in streamed.items())


def test_datasets_bad_sources_are_one_line(tmp_path, monkeypatch):
    import datasets

    from trainer.data import load_pairs

    _offline(monkeypatch)
    with pytest.raises(CuratorError) as err:
        load_pairs("declare-lab/audio-alpaca")  # not cached, hub unreachable
    msg = str(err.value)
    assert msg.startswith("--data declare-lab/audio-alpaca: the datasets id cannot be fetched") and "\n" not in msg
    datasets.Dataset.from_dict({"prompt": ["a"], "winner": [b"x"]}).save_to_disk(str(tmp_path / "other"))
    with pytest.raises(CuratorError, match=r"missing column\(s\) chosen, rejected \(the Audio-alpaca layout"):
        load_pairs(str(tmp_path / "other"))
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"prompt": ["a"]})}).save_to_disk(str(tmp_path / "t"))
    with pytest.raises(CuratorError, match="no 'train' split"):
        load_pairs(str(tmp_path / "t"))
