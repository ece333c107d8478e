"""laion-clap `.pt` checkpoints ↔ transformers `ClapModel`.

The paper filters pairs with laion-clap's 630k-audioset-best.pt (model 1) and 630k-best.pt
(model 2) (arXiv 2404.09956 §4.1.2): HTSAT-tiny audio encoder, roberta-base text encoder, unfused. Those
files hold the state dict of laion's `CLAP` module (LAION-AI/CLAP, clap_module/model.py and
htsat.py), wrapped by their DDP trainer as ``{"epoch", "name", "state_dict": {"module.<key>":
tensor}, "optimizer"}``; the optimizer's learning rate is a numpy float64 (its cosine schedule), so
the file is read with `torch.load(weights_only=True)` allowing exactly the numpy scalar globals
(`read_laion_state_dict`); the optimizer is ignored. This module maps laion's names onto
`ClapModel`'s and back:

====================================================  =================================================
laion (`CLAP`)                                         transformers (`ClapModel`)
====================================================  =================================================
audio_branch.bn0.*                                     audio_model.audio_encoder.batch_norm.*
audio_branch.patch_embed.{proj,norm}.*                 audio_model.audio_encoder.patch_embed.{proj,norm}.*
audio_branch.layers.I.blocks.J.norm1.*                 ….layers.I.blocks.J.layernorm_before.*
audio_branch.layers.I.blocks.J.attn.qkv.*  (fused)     ….attention.self.{query,key,value}.*  (split in 3)
audio_branch.layers.I.blocks.J.attn.proj.*             ….attention.output.dense.*
audio_branch.layers.I.blocks.J.attn.relative_position_{bias_table,index}  ….attention.self.(same)
audio_branch.layers.I.blocks.J.norm2.*                 ….layernorm_after.*
audio_branch.layers.I.blocks.J.mlp.fc1.* / fc2.*       ….intermediate.dense.* / ….output.dense.*
audio_branch.layers.I.downsample.{reduction,norm}.*    ….layers.I.downsample.(same)
audio_branch.norm.*                                    audio_model.audio_encoder.norm.*
text_branch.<roberta key>                              text_model.<roberta key>
{audio,text}_projection.0.* / .2.*                     {audio,text}_projection.linear1.* / .linear2.*
logit_scale_a, logit_scale_t                           (same)
====================================================  =================================================

laion keys with no counterpart, dropped on load: the torchlibrosa front end
(`audio_branch.spectrogram_extractor.*`, `audio_branch.logmel_extractor.*` — the feature extractor
computes the mel spectrogram instead), the AudioSet classifier (`audio_branch.tscam_conv.*`,
`audio_branch.head.*`), the shifted-window masks (`….attn_mask`, recomputed by `ClapModel`), the
MLP heads used only by laion's training loss (`audio_transform.*`, `text_transform.*`) and roberta's
`text_branch.embeddings.position_ids` buffer. Anything else unknown, missing or of the wrong shape
is a one-line CuratorError naming the key.

The architecture is read off the tensors (see `config_from_laion_state_dict`), so the real
checkpoints and tiny test checkpoints in the same format go through the same code.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import re
from pathlib import Path
from typing import Mapping

import torch

from db.errors import CuratorError

LAION_AUDIO = "audio_branch."
HF_AUDIO = "audio_model.audio_encoder."
LAION_TEXT = "text_branch."
HF_TEXT = "text_model."

# laion keys that have no counterpart in ClapModel (see the module docstring).
LAION_IGNORED = (
    re.compile(r"^audio_branch\.spectrogram_extractor\."),
    re.compile(r"^audio_branch\.logmel_extractor\."),
    re.compile(r"^audio_branch\.tscam_conv\."),
    re.compile(r"^audio_branch\.head\."),
    re.compile(r"^audio_branch\.layers\.\d+\.blocks\.\d+\.attn_mask$"),
    re.compile(r"^(audio|text)_transform\.sequential\.\d+\.(weight|bias)$"),
    re.compile(r"^text_branch\.embeddings\.position_ids$"),
)
# ClapModel buffers a laion checkpoint need not carry (ClapModel builds them itself).
HF_OPTIONAL = (
    re.compile(r"^text_model\.embeddings\.(position_ids|token_type_ids)$"),
)
# Keys of architectures this loader does not map (named in the error).
_FUSION = re.compile(r"fusion_model|mel_conv2d|mel_conv1d")
_CLIP_TEXT = re.compile(r"^(token_embedding|positional_embedding|ln_final)")

# Per-block renames of the HTSAT (Swin) blocks: laion suffix → ClapModel suffix.
_BLOCK_RENAMES = (
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("attn.proj.", "attention.output.dense."),
    ("attn.relative_position_bias_table", "attention.self.relative_position_bias_table"),
    ("attn.relative_position_index", "attention.self.relative_position_index"),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
)
_BLOCK = re.compile(r"^(layers\.\d+\.blocks\.\d+\.)(.*)$")
_QKV = re.compile(r"^attn\.qkv\.(weight|bias)$")
_PROJ = re.compile(r"^(audio|text)_projection\.(\d+)\.(weight|bias)$")
_HF_PROJ = re.compile(r"^(audio|text)_projection\.linear([12])\.(weight|bias)$")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _numpy_safe_globals() -> list:
    """The numpy globals a laion trainer checkpoint holds besides tensors, for `weights_only` loading.

    laion's cosine LR schedule computes the learning rate with numpy and writes it into the
    optimizer's param groups, so the pickle holds numpy scalars: `numpy.core.multiarray.scalar`
    (`numpy._core…` when saved with numpy 2), `numpy.dtype` and the dtype's class. Only these,
    for plain numeric dtypes, are allowed; anything else stays refused."""
    import numpy as np

    core = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed numpy.core
    scalar = core.multiarray.scalar
    dtypes = [type(np.dtype(name)) for name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                                               "uint8", "bool")]
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype, *dtypes]


def _unsafe_reason(exc: BaseException, path: Path) -> str:
    """Why `weights_only` refused PATH, in one line: the globals it holds that are not allowed."""
    try:
        allowed = {item[1] if isinstance(item, tuple) else f"{item.__module__}.{item.__qualname__}"
                   for item in _numpy_safe_globals()}
        unsafe = [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path) if g not in allowed]
    except Exception:  # noqa: BLE001 - legacy (non-zip) files cannot be inspected this way
        unsafe = []
    built = re.search(r"but got <class '([^']+)'>", str(exc))  # "Can only build …": an object of a refused type
    if built and not unsafe:
        unsafe = [built.group(1)]
    if unsafe:
        return f"it holds {', '.join(unsafe[:5])}{' …' if len(unsafe) > 5 else ''}"
    return _unpickler_detail(exc)


# what torch's weights_only unpickler says when it meets an object it does not allow
_REFUSED_MARKERS = ("Unsupported global", "Can only build")


def _unpickler_detail(exc: BaseException) -> str:
    """The line of a weights_only UnpicklingError that says what went wrong (torch wraps it in advice)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            detail = line.split("WeightsUnpickler error:", 1)[1].strip()
            if not detail and i + 1 < len(lines):
                detail = lines[i + 1]
            return detail.split(". Please use")[0]
    return lines[0] if lines else type(exc).__name__


def read_laion_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside a laion `.pt`: unwraps {"state_dict": ...} and strips "module.".

    Read with `torch.load(weights_only=True)`, allowing only the numpy scalars laion's trainer
    writes into the optimizer state (`_numpy_safe_globals`); the optimizer, epoch and run name
    are ignored. A file that needs any other Python object is refused, never unpickled."""
    path = Path(path)
    if not path.is_file():
        raise CuratorError(f"CLAP checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not any(marker in str(exc) for marker in _REFUSED_MARKERS):  # corrupt, or not a pickle at all
            raise CuratorError(f"CLAP checkpoint {path} is not a readable torch checkpoint (corrupt, or not written by "
                               f"torch.save): {_unpickler_detail(exc)}") from None
        raise CuratorError(f"CLAP checkpoint {path} cannot be read safely: {_unsafe_reason(exc, path)}, which "
                           "torch.load(weights_only=True) does not allow, and unpickling it with weights_only=False "
                           "could run code from the file; re-save its state_dict from a trusted copy") from None
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of every kind
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CuratorError(f"CLAP checkpoint {path} is not a readable torch checkpoint: {first}") from None
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CuratorError(f"CLAP checkpoint {path} holds no state dict of tensors")
    state = {}
    for key, value in obj.items():
        key = key[len("module."):] if key.startswith("module.") else key
        state[key] = value
    if not any(k.startswith(LAION_AUDIO) for k in state) or not any(k.startswith(LAION_TEXT) for k in state):
        raise CuratorError(f"CLAP checkpoint {path} has no audio_branch/text_branch weights: not a laion-clap checkpoint")
    return state


def _is_ignored(key: str) -> bool:
    return any(p.search(key) for p in LAION_IGNORED)


def laion_to_hf(state: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename a laion `CLAP` state dict to `ClapModel` keys (qkv split); drops LAION_IGNORED keys."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if _is_ignored(key):
            continue
        if _FUSION.search(key):
            raise CuratorError(f"{source} is a fused laion-clap checkpoint ({key}); only unfused ones "
                               "(630k-audioset-best.pt, 630k-best.pt) load from .pt")
        if _CLIP_TEXT.search(key):
            raise CuratorError(f"{source} has a CLIP-style text transformer ({key}); only the roberta text branch is supported")
        if key.startswith(LAION_AUDIO):
            rest = key[len(LAION_AUDIO):]
            if rest.startswith("bn0."):
                out[HF_AUDIO + "batch_norm." + rest[len("bn0."):]] = value
                continue
            m = _BLOCK.match(rest)
            if m:
                prefix, tail = m.groups()
                q = _QKV.match(tail)
                if q:
                    if value.shape[0] % 3:
                        raise CuratorError(f"{source}: {key} has {value.shape[0]} rows, not a multiple of 3")
                    for part, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                        out[f"{HF_AUDIO}{prefix}attention.self.{part}.{q.group(1)}"] = chunk.clone()
                    continue
                for old, new in _BLOCK_RENAMES:
                    if tail.startswith(old):
                        tail = new + tail[len(old):]
                        break
                out[HF_AUDIO + prefix + tail] = value
                continue
            out[HF_AUDIO + rest] = value  # patch_embed.*, layers.I.downsample.*, norm.*
        elif key.startswith(LAION_TEXT):
            out[HF_TEXT + key[len(LAION_TEXT):]] = value
        elif (m := _PROJ.match(key)):
            branch, index, kind = m.groups()
            if index not in ("0", "2"):
                raise CuratorError(f"{source}: unexpected projection layer {key} (laion uses indices 0 and 2)")
            out[f"{branch}_projection.linear{1 if index == '0' else 2}.{kind}"] = value
        else:
            out[key] = value  # logit_scale_a / logit_scale_t, anything else is checked against ClapModel
    return out


def hf_to_laion(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse rename: `ClapModel` keys → laion `CLAP` keys (query/key/value fused into qkv).

    Only keys with a ClapModel counterpart are produced; `laion_extras` adds the rest."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if any(p.search(key) for p in HF_OPTIONAL):
            continue
        if key.startswith(HF_AUDIO):
            rest = key[len(HF_AUDIO):]
            if rest.startswith("batch_norm."):
                out[LAION_AUDIO + "bn0." + rest[len("batch_norm."):]] = value
                continue
            m = _BLOCK.match(rest)
            if m:
                prefix, tail = m.groups()
                q = re.match(r"^attention\.self\.(query|key|value)\.(weight|bias)$", tail)
                if q:
                    qkv.setdefault(f"{LAION_AUDIO}{prefix}attn.qkv.{q.group(2)}", {})[q.group(1)] = value
                    continue
                for old, new in _BLOCK_RENAMES:
                    if tail.startswith(new):
                        tail = old + tail[len(new):]
                        break
                out[LAION_AUDIO + prefix + tail] = value
                continue
            out[LAION_AUDIO + rest] = value
        elif key.startswith(HF_TEXT):
            out[LAION_TEXT + key[len(HF_TEXT):]] = value
        elif (m := _HF_PROJ.match(key)):
            branch, linear, kind = m.groups()
            out[f"{branch}_projection.{0 if linear == '1' else 2}.{kind}"] = value
        else:
            out[key] = value
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out


def _count(state: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state if (m := rx.match(k))})


def config_from_laion_state_dict(state: Mapping[str, torch.Tensor], *, source: str = "checkpoint"):
    """The `ClapConfig` of a laion checkpoint, read off its tensors.

    Audio (HTSAT): patch size/width from patch_embed.proj, mel bins from bn0, blocks per stage by
    counting, heads per stage and window from relative_position_bias_table ((2w-1)², heads), spec
    size from the first stage's shifted-window mask (nW windows of w² tokens; default 256, the
    HTSAT-tiny value), classes from head. Text (roberta): sizes from the embeddings, layers by
    counting, heads = hidden/64 and layer-norm eps 1e-5 as in roberta-base. For 630k-*.pt this is
    HTSAT-tiny (96, depths 2/2/6/2, heads 4/8/16/32, window 8) + roberta-base, projection 512.
    """
    from transformers import ClapConfig

    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise CuratorError(f"{source} lacks {key}: not an HTSAT + roberta laion-clap checkpoint")
        return state[key]

    a = LAION_AUDIO
    proj = need(a + "patch_embed.proj.weight")  # (C, in_ch, p, p)
    stages = _count(state, r"^audio_branch\.layers\.(\d+)\.blocks\.")
    if not stages or stages != list(range(len(stages))):
        raise CuratorError(f"{source}: audio_branch.layers.* are missing or not numbered 0..N-1")
    depths, heads, window = [], [], None
    for i in stages:
        blocks = _count(state, rf"^audio_branch\.layers\.{i}\.blocks\.(\d+)\.")
        depths.append(len(blocks))
        table = need(f"{a}layers.{i}.blocks.0.attn.relative_position_bias_table")  # ((2w-1)², heads)
        heads.append(int(table.shape[1]))
        side = math.isqrt(int(table.shape[0]))
        w = (side + 1) // 2
        if side * side != table.shape[0] or 2 * w - 1 != side:
            raise CuratorError(f"{source}: relative_position_bias_table of stage {i} has {table.shape[0]} rows, not (2w-1)²")
        window = w if window is None else window
    patch = int(proj.shape[2])
    spec_size = 256
    mask = state.get(f"{a}layers.0.blocks.1.attn_mask")  # (nW, w², w²) when stage 0 has a shifted block
    if mask is not None:
        per_side = math.isqrt(int(mask.shape[0]))
        spec_size = per_side * window * patch
    n_features = int(need(a + "norm.weight").shape[0])
    fc1 = need(f"{a}layers.0.blocks.0.mlp.fc1.weight")
    audio_config = dict(
        patch_embeds_hidden_size=int(proj.shape[0]),
        patch_embed_input_channels=int(proj.shape[1]),
        patch_size=patch,
        patch_stride=[patch, patch],
        num_mel_bins=int(need(a + "bn0.weight").shape[0]),
        depths=depths,
        num_attention_heads=heads,
        window_size=int(window),
        spec_size=int(spec_size),
        hidden_size=n_features,
        num_hidden_layers=len(depths),
        mlp_ratio=float(fc1.shape[0] / fc1.shape[1]),
        qkv_bias=f"{a}layers.0.blocks.0.attn.qkv.bias" in state,
        enable_patch_layer_norm=f"{a}patch_embed.norm.weight" in state,
        num_classes=int(state[a + "head.weight"].shape[0]) if a + "head.weight" in state else 527,
        enable_fusion=False,
    )
    t = LAION_TEXT
    words = need(t + "embeddings.word_embeddings.weight")  # (vocab, hidden)
    hidden = int(words.shape[1])
    if hidden % 64:
        raise CuratorError(f"{source}: text hidden size {hidden} is not a multiple of 64 (roberta's head size)")
    layers = _count(state, r"^text_branch\.encoder\.layer\.(\d+)\.")
    text_config = dict(
        vocab_size=int(words.shape[0]),
        hidden_size=hidden,
        num_hidden_layers=len(layers),
        num_attention_heads=hidden // 64,
        intermediate_size=int(need(t + "encoder.layer.0.intermediate.dense.weight").shape[0]),
        max_position_embeddings=int(need(t + "embeddings.position_embeddings.weight").shape[0]),
        type_vocab_size=int(need(t + "embeddings.token_type_embeddings.weight").shape[0]),
        layer_norm_eps=1e-5,  # roberta-base's value (laion loads RobertaModel.from_pretrained('roberta-base'))
        pad_token_id=1, bos_token_id=0, eos_token_id=2,
    )
    projection_dim = int(need("audio_projection.0.weight").shape[0])
    text_proj = int(need("text_projection.0.weight").shape[0])
    if text_proj != projection_dim:
        raise CuratorError(f"{source}: text projection width {text_proj} differs from audio projection {projection_dim}")
    return ClapConfig(text_config=text_config, audio_config=audio_config, projection_dim=projection_dim,
                      projection_hidden_act="relu")


def load_laion_clap(path: str | Path):
    """A `ClapModel` (eval mode) with the weights of a laion-clap `.pt`. Raises CuratorError."""
    from transformers import ClapModel

    path = Path(path)
    source = f"CLAP checkpoint {path}"
    laion = read_laion_state_dict(path)
    config = config_from_laion_state_dict(laion, source=source)
    mapped = laion_to_hf(laion, source=source)
    model = ClapModel(config)
    expected = model.state_dict()
    unknown = sorted(k for k in mapped if k not in expected)
    if unknown:
        raise CuratorError(f"{source} has {len(unknown)} weights ClapModel does not know, e.g. {unknown[0]}")
    missing = sorted(k for k in expected if k not in mapped and not any(p.search(k) for p in HF_OPTIONAL))
    if missing:
        raise CuratorError(f"{source} lacks {len(missing)} weights ClapModel needs, e.g. {missing[0]}")
    for key, value in mapped.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CuratorError(f"{source}: {key} has shape {tuple(value.shape)}, ClapModel expects {tuple(expected[key].shape)}")
        if not torch.isfinite(value.float()).all():
            raise CuratorError(f"{source}: {key} contains NaN or infinite values")
    model.load_state_dict(mapped, strict=False)
    return model.eval()


def laion_extras(model) -> dict[str, torch.Tensor]:
    """Tensors a real laion `CLAP` state dict carries that ClapModel has no use for, with the shapes
    laion's modules give them (torchlibrosa STFT/mel front end, AudioSet head, shifted-window
    masks, training-loss MLPs, roberta position ids). Used to write checkpoints in laion's format."""
    audio = model.config.audio_config
    text = model.config.text_config
    g = torch.Generator().manual_seed(0)
    n_fft = 1024  # laion's window_size for 48 kHz audio
    bins = n_fft // 2 + 1
    extras = {
        "audio_branch.spectrogram_extractor.stft.conv_real.weight": torch.randn(bins, 1, n_fft, generator=g),
        "audio_branch.spectrogram_extractor.stft.conv_imag.weight": torch.randn(bins, 1, n_fft, generator=g),
        "audio_branch.logmel_extractor.melW": torch.rand(bins, audio.num_mel_bins, generator=g),
    }
    n_features = audio.hidden_size
    freq_ratio = audio.spec_size // audio.num_mel_bins
    sf = audio.spec_size // (2 ** (len(audio.depths) - 1)) // audio.patch_stride[0] // freq_ratio
    extras["audio_branch.tscam_conv.weight"] = torch.randn(audio.num_classes, n_features, max(sf, 1), 3, generator=g) * 0.01
    extras["audio_branch.tscam_conv.bias"] = torch.zeros(audio.num_classes)
    extras["audio_branch.head.weight"] = torch.randn(audio.num_classes, audio.num_classes, generator=g) * 0.01
    extras["audio_branch.head.bias"] = torch.zeros(audio.num_classes)
    res = audio.spec_size // audio.patch_stride[0]
    for i, depth in enumerate(audio.depths):
        side = res // (2 ** i)
        if side <= audio.window_size:
            continue  # laion drops the shift when the window covers the stage
        n_windows = (side // audio.window_size) ** 2
        tokens = audio.window_size ** 2
        for j in range(1, depth, 2):  # odd blocks are the shifted ones
            extras[f"audio_branch.layers.{i}.blocks.{j}.attn_mask"] = torch.zeros(n_windows, tokens, tokens)
    joint = model.config.projection_dim
    for branch in ("audio", "text"):
        for idx in (0, 3):  # MLPLayers([joint]*3): Linear, ReLU, Dropout, Linear
            extras[f"{branch}_transform.sequential.{idx}.weight"] = torch.randn(joint, joint, generator=g) * 0.01
            extras[f"{branch}_transform.sequential.{idx}.bias"] = torch.zeros(joint)
    extras["text_branch.embeddings.position_ids"] = torch.arange(text.max_position_embeddings).unsqueeze(0)
    return extras


def laion_optimizer_state(model, *, step: int = 10, total_steps: int = 100, base_lr: float = 1e-4) -> dict:
    """An AdamW state dict shaped like the one laion's trainer saves: two param groups (gains and
    biases without weight decay, the rest with it), Adam moments for every parameter, and the
    learning rate its cosine schedule assigns — a numpy float64 (0.5·(1 + np.cos(π·e/es))·lr)."""
    import numpy as np

    named = [(n, p.detach().clone().requires_grad_(True)) for n, p in model.named_parameters()]
    no_decay = [p for n, p in named if p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n]
    decay = [p for n, p in named if not any(p is q for q in no_decay)]
    optimizer = torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.2}],
                                  lr=base_lr, betas=(0.9, 0.999), eps=1e-8)
    for _, p in named:  # one step on copies, so the moments exist (the model's weights are untouched)
        p.grad = torch.zeros_like(p)
    optimizer.step()
    lr = 0.5 * (1 + np.cos(np.pi * step / total_steps)) * base_lr
    for group in optimizer.param_groups:
        group["lr"] = lr
    return optimizer.state_dict()


def save_laion_checkpoint(model, path: str | Path, *, epoch: int = 1, name: str = "tiny-630k") -> Path:
    """Write a `ClapModel` as laion's DDP trainer does: {"epoch", "name", "state_dict":
    {"module.<laion key>": tensor}, "optimizer": AdamW state with a numpy float64 learning rate}.

    Atomic (temporary file, then rename). Used to build tiny checkpoints in the real format."""
    from curator.models.tango.checkpoint import atomic_torch_save

    path = Path(path)
    state = hf_to_laion({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    state.update(laion_extras(model))
    payload = {"epoch": epoch, "name": name, "state_dict": {f"module.{k}": v for k, v in state.items()},
               "optimizer": laion_optimizer_state(model)}
    atomic_torch_save(payload, path)
    return path
