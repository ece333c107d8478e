"""`trainer pretrain` at a seconds-long size: every stage runs, the result loads through the one
Tango loader (curator generate and trainer run), a stopped run resumes to the weights the
uninterrupted one reaches, the other data sources, and the bad inputs that must end in one line
with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from db.errors import CuratorError
from trainer.pretrain import CAPTIONS_FILE, SUMMARY_FILE, run_pretrain
from trainer.pretrain_config import PretrainConfig, load_pretrain_config, smoke_config

TINY = smoke_config(n_captions=10, max_events=1, clip_s=1.28, steps=4, checkpoint_every=2, log_every=1)


def _cfg(out, **kw) -> PretrainConfig:
    return PretrainConfig(**{**TINY, "out": str(out), **kw})


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "model"
    result = run_pretrain(_cfg(out), progress=False, echo=lambda s: None)
    return out, result


def test_every_stage_runs_and_the_result_is_a_tango_checkpoint(pretrained):
    from curator.generate.backends import resolve_generator
    from curator.models.tango import load_tango
    from trainer.model import load_base

    out, result = pretrained
    assert result.steps == 4 and not result.already_done
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert set(summary["timings_s"]) >= {"data", "vae", "vocoder", "latents", "unet"}
    assert summary["final"]["unet"]["loss"] > 0 and summary["parameters"]["unet"] > 0
    for name in ("main_config.json", "pytorch_model_main.bin", "pytorch_model_vae.bin", "pytorch_model_stft.bin",
                 "unet_config.json", "vocoder_config.json", "text_encoder/config.json", "step-2/main_config.json",
                 "step-4/pretrain_state.pt"):
        assert (out / name).is_file(), name
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4] and all({"loss", "lr", "grad_norm"} <= set(m) for m in lines)

    tango = load_tango(out)  # the real loader: v-prediction, frozen T5, 64 mels at 16 kHz
    assert tango.scheduler.config.prediction_type == "v_prediction"
    assert tango.stft.n_mel_channels == 64 and tango.sample_rate == 16000
    assert not any(p.requires_grad for p in tango.text_encoder.parameters())
    assert "t5" in tango.config["text_encoder_name"]
    assert abs(tango.vae.config.scaling_factor - summary["latent_scale"]) < 1e-6
    # the final UNet is the last checkpoint's
    step4 = load_tango(out / "step-4")
    for (k, a), b in zip(tango.unet.state_dict().items(), step4.unet.state_dict().values()):
        assert torch.equal(a, b), k
    assert type(load_base(str(out))).__name__ == "Tango"  # what trainer run --model DIR loads

    gen = resolve_generator(str(out))  # what curator generate --model DIR resolves to
    waves = gen.generate(["A dog barking"], steps=3, guidance=3.0, seeds=[0], duration_s=1.28)
    assert waves[0].shape == (20480,) and np.isfinite(waves[0]).all()
    captions = (out / CAPTIONS_FILE).read_text().splitlines()
    assert captions and all(c for c in captions)


def test_a_stopped_run_resumes_to_the_same_weights(pretrained, tmp_path):
    from curator.models.tango import load_tango

    full, _ = pretrained
    out = tmp_path / "stopped"
    part = run_pretrain(_cfg(out), progress=False, echo=lambda s: None, stop_after=3)
    assert part.steps == 3 and (out / "step-3").is_dir() and not (out / "main_config.json").exists()
    done = run_pretrain(_cfg(out), progress=False, echo=lambda s: None)
    assert done.steps == 4
    a, b = load_tango(full).unet.state_dict(), load_tango(out).unet.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    again = run_pretrain(_cfg(out), progress=False, echo=lambda s: None)
    assert again.already_done
    # a resume that raises the steps (a field a rerun may change) records them in the folder's config
    more = run_pretrain(_cfg(out, steps=5), progress=False, echo=lambda s: None)
    assert more.steps == 5 and json.loads((out / "pretrain_config.json").read_text())["steps"] == 5


def test_held_out_captions_are_never_trained_on(tmp_path):
    from trainer.pretrain_data import world_captions, world_examples

    held = world_captions(5, seed=0, min_events=1, max_events=1)
    file = tmp_path / "held.txt"
    file.write_text("\n".join(held) + "\n")
    ex = world_examples(_cfg(tmp_path / "x", exclude_captions=str(file)))
    assert not set(ex.captions) & set(held) and len(ex)


def _wav(path, seconds=1.0, freq=440.0):
    import soundfile as sf

    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)


def test_a_folder_of_caption_audio_rows_and_an_export(tmp_path):
    from trainer.pretrain_config import PretrainConfig
    from trainer.pretrain_data import load_examples
    from trainer.synthetic import write_export

    rows = tmp_path / "rows"
    rows.mkdir()
    for i in range(3):
        _wav(rows / f"{i}.wav", freq=300 + 100 * i)
    (rows / "metadata.csv").write_text("file_name,caption\n0.wav,a bell\n1.wav,a dog\n2.wav,rain falling\n")
    cfg = PretrainConfig(**{**TINY, "data": str(rows), "out": str(tmp_path / "r")})
    ex = load_examples(cfg)
    assert ex.captions == ["a bell", "a dog", "rain falling"] and all(w.shape == (20480,) for w in ex.waves)
    result = run_pretrain(cfg.__class__(**{**cfg.to_dict(), "steps": 2}), progress=False, echo=lambda s: None)
    assert (result.out_dir / "main_config.json").is_file()

    export = write_export(tmp_path / "export" / "train.parquet", 3, duration_s=0.5)
    ex = load_examples(PretrainConfig(**{**TINY, "data": str(export.parent), "out": "x"}))
    assert len(ex) == 3 and all(w.shape == (20480,) for w in ex.waves)


@pytest.mark.parametrize("case", ["clip-length", "empty-folder", "unparsable-rows", "export-without-audio",
                                  "missing-file", "unknown-key", "other-config"])
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path, pretrained):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainer.cli import app

    out = tmp_path / "run"
    data = tmp_path / "data"
    args = ["pretrain", "--size", "smoke", "--out", str(out), "--quiet", "--set", "n_captions=4"]
    expect = {"clip-length": "not a multiple of 8", "empty-folder": "empty", "unparsable-rows": "not valid json",
              "export-without-audio": "audio is missing", "missing-file": "does not exist",
              "unknown-key": "unknown key", "other-config": "another config"}[case]
    if case == "clip-length":
        args += ["--data", "world", "--set", "clip_s=2.5"]
    elif case == "empty-folder":
        data.mkdir()
        args += ["--data", str(data)]
    elif case == "unparsable-rows":
        data.mkdir()
        (data / "metadata.jsonl").write_text('{"file_name": "a.wav", "caption": "x"}\n{not json\n')
        args += ["--data", str(data)]
    elif case == "export-without-audio":
        data.mkdir()
        pq.write_table(pa.Table.from_pylist([{"prompt": "a dog", "chosen": {"bytes": None, "path": None},
                                              "rejected": {"bytes": None, "path": None}, "strategy": "1.1"}]),
                       data / "train.parquet")
        args += ["--data", str(data)]
    elif case == "missing-file":
        data.mkdir()
        (data / "metadata.csv").write_text("file_name,caption\ngone.wav,a dog\n")
        args += ["--data", str(data)]
    elif case == "unknown-key":
        args += ["--data", "world", "--set", "stepz=3"]
    elif case == "other-config":
        out = pretrained[0]
        args = ["pretrain", "--data", "world", "--out", str(out), "--quiet",
                *[f"--set={k}={v}" for k, v in TINY.items()], "--set", "unet_channels=64"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and expect in lines[0].lower(), res.output
    if case != "other-config":
        assert not out.exists()


def test_config_file_and_set_are_validated(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text('steps = 7\nclip_s = 5.12\n')
    cfg = load_pretrain_config(file, ["batch_size=3"], out="x")
    assert (cfg.steps, cfg.clip_s, cfg.batch_size, cfg.frames) == (7, 5.12, 3, 512)
    with pytest.raises(CuratorError, match="max_events"):
        PretrainConfig(min_events=3, max_events=2)
    with pytest.raises(CuratorError, match="expected a number"):
        load_pretrain_config(None, ["clip_s=long"])
