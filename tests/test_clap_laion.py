"""laion-clap `.pt` → ClapModel: key names, the qkv split, config inference, one-line errors.

The tiny checkpoint is written in laion's format (DDP "module." prefix inside {"state_dict"},
laion's key names, the extra tensors laion's modules carry) and loaded through `load_clap`, the
code path a user's 630k-audioset-best.pt takes. Its key set is checked against name patterns
read from LAION-AI/CLAP (clap_module/model.py, htsat.py), so the mapping is not only tested
against its own inverse.
"""

from __future__ import annotations

import pickle
import re
import zipfile

import numpy as np
import pytest
import torch

from db.errors import CuratorError
from curator.scoring.clap import ClapScorer, load_clap
from curator.scoring.laion import (
    config_from_laion_state_dict,
    hf_to_laion,
    laion_to_hf,
    load_laion_clap,
    read_laion_state_dict,
)
from curator.scoring.tiny import build_tiny_laion, build_tiny_model

# Key names of laion's `CLAP` module with an HTSAT audio branch and a roberta text branch, as
# its code names them: CLAP (audio_branch, text_branch, text_transform/audio_transform =
# MLPLayers.sequential [Linear, ReLU, Dropout, Linear] → 0 and 3, *_projection = Sequential
# [Linear, ReLU, Linear] → 0 and 2, logit_scale_a/t); HTSAT_Swin_Transformer (torchlibrosa
# spectrogram_extractor.stft.conv_real/conv_imag and logmel_extractor.melW, bn0, patch_embed.proj/norm,
# layers.I.blocks.J.{norm1, attn.{relative_position_bias_table, relative_position_index, qkv, proj},
# norm2, mlp.fc1/fc2, attn_mask}, layers.I.downsample.{reduction, norm}, norm, tscam_conv, head);
# RobertaModel (embeddings.*, encoder.layer.N.*, pooler.dense, position_ids in older transformers).
LAION_KEY_PATTERNS = [
    r"audio_branch\.spectrogram_extractor\.stft\.conv_(real|imag)\.weight",
    r"audio_branch\.logmel_extractor\.melW",
    r"audio_branch\.bn0\.(weight|bias|running_mean|running_var|num_batches_tracked)",
    r"audio_branch\.patch_embed\.proj\.(weight|bias)",
    r"audio_branch\.patch_embed\.norm\.(weight|bias)",
    r"audio_branch\.layers\.\d+\.blocks\.\d+\.norm[12]\.(weight|bias)",
    r"audio_branch\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_(bias_table|index)",
    r"audio_branch\.layers\.\d+\.blocks\.\d+\.attn\.(qkv|proj)\.(weight|bias)",
    r"audio_branch\.layers\.\d+\.blocks\.\d+\.mlp\.fc[12]\.(weight|bias)",
    r"audio_branch\.layers\.\d+\.blocks\.[13579]\.attn_mask",
    r"audio_branch\.layers\.\d+\.downsample\.reduction\.weight",
    r"audio_branch\.layers\.\d+\.downsample\.norm\.(weight|bias)",
    r"audio_branch\.norm\.(weight|bias)",
    r"audio_branch\.tscam_conv\.(weight|bias)",
    r"audio_branch\.head\.(weight|bias)",
    r"text_branch\.embeddings\.(word|position|token_type)_embeddings\.weight",
    r"text_branch\.embeddings\.LayerNorm\.(weight|bias)",
    r"text_branch\.embeddings\.position_ids",
    r"text_branch\.encoder\.layer\.\d+\.attention\.self\.(query|key|value)\.(weight|bias)",
    r"text_branch\.encoder\.layer\.\d+\.attention\.output\.(dense|LayerNorm)\.(weight|bias)",
    r"text_branch\.encoder\.layer\.\d+\.intermediate\.dense\.(weight|bias)",
    r"text_branch\.encoder\.layer\.\d+\.output\.(dense|LayerNorm)\.(weight|bias)",
    r"text_branch\.pooler\.dense\.(weight|bias)",
    r"(audio|text)_transform\.sequential\.[03]\.(weight|bias)",
    r"(audio|text)_projection\.[02]\.(weight|bias)",
    r"logit_scale_[at]",
]


@pytest.fixture(scope="module")
def tiny_laion(tmp_path_factory):
    folder = tmp_path_factory.mktemp("laion")
    checkpoint, tokenizer = build_tiny_laion(folder, seed=3)
    return checkpoint, tokenizer


def _waves(n: int, seconds: float = 2.0) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(48_000 * seconds)) / 48_000
    return [(0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
            for i in range(n)]


def test_tiny_checkpoint_is_in_laions_format(tiny_laion):
    checkpoint, _ = tiny_laion
    # as laion's trainer writes it: the numpy learning rate makes plain weights_only loading refuse it
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(checkpoint, map_location="cpu", weights_only=True)
    raw = torch.load(checkpoint, map_location="cpu", weights_only=False)  # our own file, written just now
    assert set(raw) == {"epoch", "name", "state_dict", "optimizer"}
    groups = raw["optimizer"]["param_groups"]
    assert len(groups) == 2 and all(type(g["lr"]) is np.float64 for g in groups)
    assert [g["weight_decay"] for g in groups] == [0.0, 0.2]
    assert all({"exp_avg", "exp_avg_sq"} <= set(state) for state in raw["optimizer"]["state"].values())
    keys = list(raw["state_dict"])
    assert all(k.startswith("module.") for k in keys)
    keys = [k[len("module."):] for k in keys]
    compiled = [re.compile(p + r"$") for p in LAION_KEY_PATTERNS]
    unmatched = [k for k in keys if not any(p.match(k) for p in compiled)]
    assert unmatched == []
    unused = [p.pattern for p in compiled if not any(p.match(k) for k in keys)]
    assert unused == []  # every kind of laion key is present, including the ones the loader drops
    # fused q/k/v: one (3C, C) tensor per block, no transformers names in the audio branch
    assert not any(re.search(r"audio_branch\..*\.(query|key|value)\.", k) for k in keys)
    qkv = raw["state_dict"]["module.audio_branch.layers.0.blocks.0.attn.qkv.weight"]
    assert tuple(qkv.shape) == (3 * 8, 8)


def test_laion_checkpoint_loads_with_the_original_embeddings(tiny_laion):
    checkpoint, tokenizer_dir = tiny_laion
    scorer = load_clap(str(checkpoint), tokenizer_source=str(tokenizer_dir))
    assert scorer.name == "tiny-630k" and scorer.backend == "clap" and scorer.sample_rate == 48_000
    assert scorer.file_hash and len(scorer.file_hash) == 64
    original = build_tiny_model(len(scorer.tokenizer), seed=3)
    reference = ClapScorer(original, scorer.tokenizer, scorer.featurizer.extractor, name="ref", checkpoint="ref")
    texts = ["a dog barks while a man speaks", "rain falls on a metal roof", "a bell rings"]
    waves = _waves(3)
    torch.testing.assert_close(scorer.text_embeddings(texts), reference.text_embeddings(texts), rtol=0, atol=1e-6)
    torch.testing.assert_close(scorer.audio_embeddings(waves), reference.audio_embeddings(waves), rtol=0, atol=1e-5)
    np.testing.assert_allclose(scorer.score(texts, waves), reference.score(texts, waves), atol=1e-5)
    # every ClapModel tensor came from the file (bn0 statistics, split q/k/v, projections, logit scales)
    loaded = load_laion_clap(checkpoint).state_dict()
    for key, value in original.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_qkv_split_order_and_renames():
    model = build_tiny_model(300, seed=1)
    hf = model.state_dict()
    laion = hf_to_laion(hf)
    block = "layers.1.blocks.1."
    fused = laion[f"audio_branch.{block}attn.qkv.weight"]
    q, k, v = fused.chunk(3, dim=0)
    assert torch.equal(q, hf[f"audio_model.audio_encoder.{block}attention.self.query.weight"])
    assert torch.equal(k, hf[f"audio_model.audio_encoder.{block}attention.self.key.weight"])
    assert torch.equal(v, hf[f"audio_model.audio_encoder.{block}attention.self.value.weight"])
    assert torch.equal(laion["audio_branch.bn0.running_var"], hf["audio_model.audio_encoder.batch_norm.running_var"])
    assert torch.equal(laion[f"audio_branch.{block}mlp.fc2.bias"], hf[f"audio_model.audio_encoder.{block}output.dense.bias"])
    assert torch.equal(laion["text_projection.2.weight"], hf["text_projection.linear2.weight"])
    back = laion_to_hf(laion)
    assert set(back) == {k for k in hf if not k.endswith(("position_ids", "token_type_ids"))}


def test_config_inferred_for_the_papers_checkpoint_shapes():
    """HTSAT-tiny + roberta-base shapes (on the meta device: no memory) → the 630k architecture."""
    from transformers import ClapConfig, ClapModel

    with torch.device("meta"):
        big = ClapModel(ClapConfig())
    state = hf_to_laion(big.state_dict())
    state["audio_branch.layers.0.blocks.1.attn_mask"] = torch.empty(64, 64, 64, device="meta")
    state["audio_branch.head.weight"] = torch.empty(527, 527, device="meta")
    cfg = config_from_laion_state_dict(state)
    audio, text = cfg.audio_config, cfg.text_config
    assert audio.patch_embeds_hidden_size == 96 and list(audio.depths) == [2, 2, 6, 2]
    assert list(audio.num_attention_heads) == [4, 8, 16, 32] and audio.window_size == 8
    assert audio.spec_size == 256 and audio.num_mel_bins == 64 and audio.hidden_size == 768
    assert audio.num_classes == 527 and not audio.enable_fusion
    assert (text.vocab_size, text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (50265, 768, 12, 12)
    assert text.max_position_embeddings == 514 and text.intermediate_size == 3072
    assert cfg.projection_dim == 512


def test_plain_state_dict_without_module_prefix_loads(tiny_laion, tmp_path):
    checkpoint, _ = tiny_laion
    state = read_laion_state_dict(checkpoint)
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)
    assert set(load_laion_clap(plain).state_dict()) == set(load_laion_clap(checkpoint).state_dict())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("audio_branch.norm.weight"), "lacks audio_branch.norm.weight"),
        (lambda s: s.pop("text_branch.pooler.dense.bias"), "lacks 1 weights ClapModel needs, e.g. text_model.pooler.dense.bias"),
        (lambda s: s.__setitem__("audio_branch.patch_embed.mel_conv2d.weight", torch.zeros(1)), "fused laion-clap checkpoint"),
        (lambda s: s.__setitem__("audio_branch.mystery.weight", torch.zeros(1)), "does not know, e.g. audio_model.audio_encoder.mystery.weight"),
        (lambda s: s.__setitem__("logit_scale_a", torch.zeros(2)), "logit_scale_a has shape (2,)"),
        (lambda s: s.__setitem__("audio_projection.2.bias", torch.full((16,), float("nan"))), "NaN or infinite"),
    ],
)
def test_bad_checkpoints_fail_in_one_line(tiny_laion, tmp_path, edit, message):
    state = read_laion_state_dict(tiny_laion[0])
    edit(state)
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    with pytest.raises(CuratorError, match=re.escape(message)) as info:
        load_laion_clap(path)
    assert "\n" not in str(info.value)


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CuratorError, match="not a readable torch checkpoint"):
        load_laion_clap(junk)
    with pytest.raises(CuratorError, match="does not exist"):
        load_laion_clap(tmp_path / "absent.pt")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, other)
    with pytest.raises(CuratorError, match="not a laion-clap checkpoint"):
        load_laion_clap(other)


@pytest.fixture
def load_calls(monkeypatch):
    """The weights_only argument of every torch.load call (the loader must never pass False)."""
    calls, real = [], torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


def test_trainer_checkpoint_reads_with_weights_only(tiny_laion, load_calls):
    """epoch, name, module.-prefixed state_dict and an AdamW state with a numpy float64 lr."""
    state = read_laion_state_dict(tiny_laion[0])
    assert load_calls == [True]
    assert "audio_branch.bn0.running_var" in state and not any(k.startswith("module.") for k in state)
    assert len(state) == len(torch.load(tiny_laion[0], weights_only=False)["state_dict"])  # optimizer ignored


def _rename_pickle_global(src, dst, old: bytes, new: bytes) -> None:
    """Copy a torch zip checkpoint, renaming a global in its pickle (protocol 2: 'c<module>\\n<name>\\n')."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                assert old in data
                data = data.replace(old, new)
            zout.writestr(info, data)


def test_checkpoint_pickled_with_numpy_1_loads(tiny_laion, tmp_path, load_calls):
    """The published files date from numpy 1.x, whose scalars pickle as numpy.core.multiarray.scalar."""
    old = tmp_path / "numpy1.pt"
    _rename_pickle_global(tiny_laion[0], old, b"cnumpy._core.multiarray\nscalar\n", b"cnumpy.core.multiarray\nscalar\n")
    assert "numpy.core.multiarray.scalar" in torch.serialization.get_unsafe_globals_in_checkpoint(old)
    assert read_laion_state_dict(old).keys() == read_laion_state_dict(tiny_laion[0]).keys()
    assert set(load_calls) == {True}


def test_checkpoint_with_other_objects_is_refused_unread(tiny_laion, tmp_path, load_calls):
    """Objects beyond tensors and numpy scalars are refused in one line naming them; the file is
    never unpickled with weights_only=False (the marker file its payload would create stays absent)."""
    import argparse

    marker = tmp_path / "payload-ran"
    state = read_laion_state_dict(tiny_laion[0])
    bad = tmp_path / "with-args.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()},
                "args": argparse.Namespace(lr=1e-4), "hook": _Payload(marker)}, bad)
    load_calls.clear()
    with pytest.raises(CuratorError, match="cannot be read safely: it holds .*argparse.Namespace") as info:
        load_clap(str(bad))
    message = str(info.value)
    assert "\n" not in message and "weights_only=True" in message and "open" in message
    assert load_calls == [True] and not marker.exists()


class _Payload:
    """Creates a file when unpickled: the kind of object weights_only loading exists to refuse."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_offline_tokenizer_source_is_one_line(tiny_laion, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CuratorError, match="cannot load the CLAP tokenizer/feature extractor from 'laion/clap-htsat-unfused'") as info:
        load_clap(str(tiny_laion[0]))  # default source: the hub id, unreachable offline
    assert "\n" not in str(info.value)
