"""The Tango loader/saver: a tiny model of the real classes, saved in the declare-lab layout,
loaded back through the same code path as a downloaded checkpoint."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from db.errors import CuratorError
from curator.models import tango as T
from curator.models.tango import config, keys, parts
from curator.models.tiny import build_tiny_tango, tiny_tango

PROMPTS = ["a dog barks while rain falls", "a man speaks"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_tango(tmp_path_factory.mktemp("tiny") / "tango", seed=3)


@pytest.fixture(scope="module")
def loaded(tiny_dir):
    return T.load_tango(tiny_dir)


def test_saved_folder_is_the_declare_lab_layout(tiny_dir):
    for name in config.LAYOUT_FILES:
        assert (tiny_dir / name).is_file(), name
    main = json.loads((tiny_dir / "main_config.json").read_text())
    assert set(main) == {"text_encoder_name", "scheduler_name", "unet_model_name", "unet_model_config_path",
                         "snr_gamma", "freeze_text_encoder", "uncondition"}
    state = torch.load(tiny_dir / "pytorch_model_main.bin", weights_only=True)
    assert {k.split(".")[0] for k in state} == {"unet", "text_encoder"}
    vae = torch.load(tiny_dir / "pytorch_model_vae.bin", weights_only=True)
    # AudioLDM's own names, the HiFi-GAN inside the VAE file
    assert "encoder.down.0.block.0.conv1.weight" in vae
    assert "decoder.up.2.block.0.conv1.weight" in vae
    assert "decoder.up.1.upsample.conv.weight" in vae
    assert vae["encoder.mid.attn_1.q.weight"].ndim == 4  # 1×1 conv in the original
    assert "encoder.norm_out.weight" in vae and "vocoder.ups.0.weight" in vae
    assert not any("down_blocks" in k or "upsampler" in k for k in vae)
    stft = torch.load(tiny_dir / "pytorch_model_stft.bin", weights_only=True)
    assert set(stft) == {"stft_fn.forward_basis", "stft_fn.inverse_basis", "mel_basis"}
    assert tuple(stft["mel_basis"].shape) == (64, 513)


def test_loaded_equals_in_memory_model(loaded):
    ref = tiny_tango(seed=3)
    for part in ("unet", "text_encoder", "vae", "vocoder"):
        a, b = getattr(ref, part).state_dict(), getattr(loaded, part).state_dict()
        assert a.keys() == b.keys(), part
        for k in a:
            assert torch.equal(a[k], b[k]), f"{part}.{k}"
    h1, m1 = T.encode_text(ref, PROMPTS)
    h2, m2 = T.encode_text(loaded, PROMPTS)
    assert h1.shape[0] == 2 and h1.shape[2] == 32 and m1.dtype == torch.bool
    assert torch.equal(h1, h2) and torch.equal(m1, m2)
    assert loaded.scheduler.config.prediction_type == "v_prediction"
    wave = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    mel = T.waveform_to_mel(loaded, wave)[:, :, :96]
    assert tuple(mel.shape) == (2, 1, 96, 64)
    z1, z2 = T.mel_to_latent(ref, mel), T.mel_to_latent(loaded, mel)
    assert tuple(z1.shape) == (2, 8, 24, 16) and torch.equal(z1, z2)
    w1, w2 = T.latent_to_waveform(ref, z1), T.latent_to_waveform(loaded, z1)
    assert w1.shape[0] == 2 and torch.equal(w1, w2)
    g1 = T.generate(ref, PROMPTS, steps=3, seeds=[1, 2], duration_s=0.5)
    g2 = T.generate(loaded, PROMPTS, steps=3, seeds=[1, 2], duration_s=0.5)
    assert [g.shape for g in g1] == [(8000,), (8000,)]
    np.testing.assert_array_equal(g1[0], g2[0])
    assert np.abs(g1[0] - g1[1]).max() > 0  # different prompts/seeds → different clips
    assert g1[0].std() > 1e-3  # audible after 16-bit quantisation


def test_clip_depends_on_its_seed_not_its_batch(loaded):
    both = T.generate(loaded, PROMPTS, steps=4, seeds=[7, 8], duration_s=0.4)
    alone = T.generate(loaded, PROMPTS[1:], steps=4, seeds=[8], duration_s=0.4)
    np.testing.assert_allclose(both[1], alone[0], atol=1e-5)
    again = T.generate(loaded, PROMPTS[1:], steps=4, seeds=[9], duration_s=0.4)
    assert np.abs(again[0] - alone[0]).max() > 1e-4


def test_vae_key_mapping_round_trip(loaded):
    n = len(loaded.vae.config.block_out_channels)
    vae_sd, voc_sd = loaded.vae.state_dict(), loaded.vocoder.state_dict()
    original = keys.diffusers_vae_to_original(vae_sd, voc_sd, n)
    assert len(original) == len(vae_sd) + len(voc_sd) - 2  # mean/scale are not AudioLDM's
    back_vae, back_voc = keys.original_vae_to_diffusers(original, n)
    assert back_vae.keys() == vae_sd.keys()
    assert all(torch.equal(back_vae[k], vae_sd[k]) for k in vae_sd)
    assert set(back_voc) == set(voc_sd) - {"mean", "scale"}
    # the decoder's level order is reversed between the two namings
    assert keys.vae_key_to_diffusers("decoder.up.0.block.1.nin_shortcut.weight", 3) == \
        "decoder.up_blocks.2.resnets.1.conv_shortcut.weight"
    assert keys.vae_key_to_original("decoder.up_blocks.0.upsamplers.0.conv.bias", 3) == "decoder.up.2.upsample.conv.bias"
    assert keys.vae_key_to_diffusers("encoder.mid.attn_1.proj_out.weight", 3) == \
        "encoder.mid_block.attentions.0.to_out.0.weight"
    assert keys.vocoder_key_to_diffusers("ups.3.weight") == "upsampler.3.weight"
    with pytest.raises(CuratorError, match="unexpected key 'model.diffusion_model"):
        keys.original_vae_to_diffusers({"model.diffusion_model.x.weight": torch.zeros(1)}, 3)


def test_key_tables_round_trip_every_key_of_a_tiny_model(loaded):
    """One rule table per mapping, read both ways: every key of the tiny model's VAE and vocoder
    goes to the other naming and back unchanged, from either side, and no two keys collide."""
    n = len(loaded.vae.config.block_out_channels)
    vae_keys = list(loaded.vae.state_dict())
    voc_keys = [k for k in loaded.vocoder.state_dict() if k not in ("mean", "scale")]
    original = [keys.vae_key_to_original(k, n) for k in vae_keys]
    assert len(set(original)) == len(vae_keys)
    assert [keys.vae_key_to_diffusers(k, n) for k in original] == vae_keys
    voc_original = [keys.vocoder_key_to_original(k) for k in voc_keys]
    assert len(set(voc_original)) == len(voc_keys)
    assert [keys.vocoder_key_to_diffusers(k) for k in voc_original] == voc_keys
    # every family of keys is covered, in the names each side uses
    for part in ("encoder.down.0.block.0.", "decoder.up.1.upsample.", "encoder.mid.block_2.", "decoder.mid.attn_1.q.",
                 "encoder.norm_out.", "quant_conv."):
        assert any(k.startswith(part) for k in original), part
    assert any(k.startswith("ups.") for k in voc_original) and any(k.startswith("resblocks.") for k in voc_original)
    # a key of neither naming is refused both ways
    for convert in (keys.vae_key_to_diffusers, keys.vae_key_to_original):
        with pytest.raises(KeyError):
            convert("encoder.something_else.weight", n)
    # each rule names the same slots on both sides
    for table in (keys.VAE_RULES, keys.VOCODER_RULES):
        for original_tpl, diffusers_tpl in table:
            assert sorted(keys._SLOT.findall(original_tpl)) == sorted(keys._SLOT.findall(diffusers_tpl))


def test_save_of_a_loaded_model_loads_identically(loaded, tmp_path):
    out = T.save_tango(loaded, tmp_path / "again")
    again = T.load_tango(out)
    for part in ("unet", "text_encoder", "vae", "vocoder"):
        a, b = getattr(loaded, part).state_dict(), getattr(again, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), part
    # saving into an existing folder (a trainer checkpoint) keeps other files there
    (out / "trainer_state.json").write_text("{}")
    T.save_tango(again, out)
    assert (out / "trainer_state.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_official_checkpoint_defaults(tiny_dir, tmp_path):
    """A folder as published (no unet_config.json/vocoder/scheduler extras) falls back to the
    official configs; here the tiny weights then no longer fit the real-size UNet: one line."""
    folder = tmp_path / "official"
    shutil.copytree(tiny_dir, folder)
    (folder / "unet_config.json").unlink()
    (folder / "vocoder_config.json").unlink()
    shutil.rmtree(folder / "scheduler")
    main = json.loads((folder / "main_config.json").read_text())
    main["unet_model_config_path"] = "configs/diffusion_model_config.json"
    (folder / "main_config.json").write_text(json.dumps(main))
    with pytest.raises(CuratorError) as err:
        T.load_tango(folder)
    assert "UNet weights do not match its config" in str(err.value) and "\n" not in str(err.value)
    sched = parts.default_scheduler().config
    assert (sched.num_train_timesteps, sched.beta_start, sched.beta_end, sched.beta_schedule, sched.prediction_type) == \
        (1000, 0.00085, 0.012, "scaled_linear", "v_prediction")


def test_unet_config_is_read_only_inside_the_checkpoint_folder(tiny_dir, tmp_path, monkeypatch, caplog):
    """unet_model_config_path resolves inside the folder, then to the built-in official config
    (said in the log line); a file of that name in the current directory is never used."""
    import logging

    tiny_unet = (tiny_dir / "unet_config.json").read_text()
    cwd = tmp_path / "cwd"
    (cwd / "configs").mkdir(parents=True)
    # files an unrelated project left in the current directory; the tiny UNet's own config would
    # even make the load succeed, so using them would go unnoticed
    (cwd / "configs" / "diffusion_model_config.json").write_text(tiny_unet)
    (cwd / "stray.json").write_text(tiny_unet)
    monkeypatch.chdir(cwd)
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, folder)
    (folder / "unet_config.json").unlink()

    def point_to(path: str) -> None:
        main = json.loads((folder / "main_config.json").read_text())
        main["unet_model_config_path"] = path
        (folder / "main_config.json").write_text(json.dumps(main))

    # the official name: not in the folder → the built-in config (real size: the tiny weights do not fit)
    point_to("configs/diffusion_model_config.json")
    with caplog.at_level(logging.INFO, logger="curator.models.tango"), pytest.raises(CuratorError) as err:
        T.load_tango(folder)
    assert "UNet weights do not match its config" in str(err.value)
    assert any("using the built-in Tango UNet config" in r.getMessage() and r.levelno == logging.INFO
               for r in caplog.records)
    # any other name outside the folder: a cwd-relative, escaping or absolute path is refused
    for path in ("stray.json", "../cwd/stray.json", str(cwd / "stray.json")):
        point_to(path)
        with pytest.raises(CuratorError, match="is neither a file inside .* nor the official") as err:
            T.load_tango(folder)
        assert "\n" not in str(err.value)
    # inside the folder (also in a subfolder, as the official repo lays it out) it is used, and said so
    (folder / "configs").mkdir()
    (folder / "configs" / "diffusion_model_config.json").write_text(tiny_unet)
    point_to("configs/diffusion_model_config.json")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="curator.models.tango"):
        loaded = T.load_tango(folder)
    assert list(loaded.unet.config.block_out_channels) == json.loads(tiny_unet)["block_out_channels"]
    assert any(f"UNet config from {folder / 'configs' / 'diffusion_model_config.json'}" in r.getMessage()
               for r in caplog.records)


def _broken(tiny_dir, tmp_path, edit):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_dir, folder)
    edit(folder)
    with pytest.raises(CuratorError) as err:
        T.load_tango(folder)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_bad_layouts_are_one_clear_line(tiny_dir, tmp_path):
    assert "missing pytorch_model_vae.bin" in _broken(tiny_dir, tmp_path, lambda f: (f / "pytorch_model_vae.bin").unlink())
    shutil.rmtree(tmp_path / "broken")
    assert "cannot read" in _broken(tiny_dir, tmp_path, lambda f: (f / "pytorch_model_main.bin").write_bytes(b"junk"))
    shutil.rmtree(tmp_path / "broken")

    def bad_stft(f):
        cfg = json.loads((f / "stft_config.json").read_text())
        cfg["n_mel_chanels"] = 64
        (f / "stft_config.json").write_text(json.dumps(cfg))

    assert "unknown key(s) n_mel_chanels" in _broken(tiny_dir, tmp_path, bad_stft)
    shutil.rmtree(tmp_path / "broken")

    def wrong_arch(f):
        cfg = json.loads((f / "unet_config.json").read_text())
        cfg["block_out_channels"] = [32, 96]
        (f / "unet_config.json").write_text(json.dumps(cfg))

    assert "UNet" in _broken(tiny_dir, tmp_path, wrong_arch)
    shutil.rmtree(tmp_path / "broken")
    assert "is not valid JSON" in _broken(tiny_dir, tmp_path, lambda f: (f / "vae_config.json").write_text("{"))
    with pytest.raises(CuratorError, match="does not exist"):
        T.load_tango(tmp_path / "nowhere")


def test_hub_id_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CuratorError) as err:
        T.load_tango("declare-lab/tango-full-ft-audiocaps-not-cached")
    assert "cannot fetch Tango checkpoint" in str(err.value) and "\n" not in str(err.value)


def test_mel_matches_librosa(loaded):
    import librosa

    wave = np.sin(2 * np.pi * 440 * np.arange(8000) / 16000).astype(np.float32)
    ours = T.waveform_to_mel(loaded, wave[None], normalize=False)[0, 0].numpy()  # (frames, 64)
    mag = np.abs(librosa.stft(wave, n_fft=1024, hop_length=160, win_length=1024, window="hann", center=True,
                              pad_mode="reflect"))
    ref = np.log(np.clip(librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=0, fmax=8000) @ mag, 1e-5, None))
    np.testing.assert_allclose(ours, ref.T[: ours.shape[0]], atol=1e-2)
    assert ours.shape == (50, 64)


def test_weight_norm_vocoder_keys_are_folded(loaded):
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(4, 6, 3))
    g = conv.parametrizations.weight.original0.detach()
    v = conv.parametrizations.weight.original1.detach()
    folded = keys.fold_weight_norm({"vocoder.conv_pre.weight_g": g, "vocoder.conv_pre.weight_v": v})
    torch.testing.assert_close(folded["vocoder.conv_pre.weight"], conv.weight.detach())
