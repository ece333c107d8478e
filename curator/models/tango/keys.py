"""Key conversion between the declare-lab checkpoint (AudioLDM's LDM names for the VAE and its
HiFi-GAN) and the diffusers AutoencoderKL / transformers SpeechT5HifiGan state dicts.

Each name mapping is ONE table of (original template, diffusers template) rules, read left to
right when loading and right to left when saving, so the two directions cannot drift apart. A
template is a key with `{field}` slots; a field has a pattern on each side and a conversion that
runs forward (original → diffusers) or backward. The decoder's up blocks are numbered in opposite
orders (LDM's `up.0` is the highest resolution, diffusers' `up_blocks.0` the lowest), which the
`up` field maps with `n_levels − 1 − i`, its own inverse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch

from db.errors import CuratorError
from curator.models.tango.config import VAE_WEIGHTS


@dataclass(frozen=True)
class Field:
    """One slot of a template: its pattern in original and in diffusers keys, and the value
    conversions (value, n_levels) → value in each direction."""

    original: str
    diffusers: str
    forward: Callable[[str, int], str] = lambda v, n: v
    backward: Callable[[str, int], str] = lambda v, n: v


def _same(pattern: str) -> Field:
    return Field(pattern, pattern)


def _renamed(table: dict[str, str], *, others: str | None = None) -> Field:
    """Values renamed by TABLE (original → diffusers); OTHERS, a pattern, lets any other value through
    unchanged in both directions."""
    inverse = {v: k for k, v in table.items()}

    def alternatives(names) -> str:
        alts = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        return f"{alts}|{others}" if others else alts

    return Field(alternatives(table), alternatives(inverse),
                 lambda v, n: table.get(v, v), lambda v, n: inverse.get(v, v))


def _flipped_level(v: str, n_levels: int) -> str:
    return str(n_levels - 1 - int(v))


FIELDS: dict[str, Field] = {
    "side": _same("encoder|decoder"),
    "param": _same("weight|bias"),
    "i": _same(r"\d+"),
    "j": _same(r"\d+"),
    "up": Field(r"\d+", r"\d+", _flipped_level, _flipped_level),
    "mid": _renamed({"1": "0", "2": "1"}),  # LDM's mid.block_1/2 are diffusers' mid_block.resnets.0/1
    # the resnet's layers (nin_shortcut is diffusers' conv_shortcut), then the parameter's name
    "layer": _renamed({"nin_shortcut": "conv_shortcut"}, others=r"[^.]+"),
    "rest": _same(r".+"),
    # LDM's attention is 1×1 convolutions named q/k/v/proj_out; diffusers' an Attention module
    "attn": _renamed({"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}),
    "convs": _same("convs[12]"),
}

# AudioLDM VAE (LDM names) ↔ diffusers AutoencoderKL
VAE_RULES: tuple[tuple[str, str], ...] = (
    ("quant_conv.{param}", "quant_conv.{param}"),
    ("post_quant_conv.{param}", "post_quant_conv.{param}"),
    ("{side}.conv_in.{param}", "{side}.conv_in.{param}"),
    ("{side}.conv_out.{param}", "{side}.conv_out.{param}"),
    ("{side}.norm_out.{param}", "{side}.conv_norm_out.{param}"),
    ("encoder.down.{i}.block.{j}.{layer}.{rest}", "encoder.down_blocks.{i}.resnets.{j}.{layer}.{rest}"),
    ("encoder.down.{i}.downsample.conv.{param}", "encoder.down_blocks.{i}.downsamplers.0.conv.{param}"),
    ("decoder.up.{up}.block.{j}.{layer}.{rest}", "decoder.up_blocks.{up}.resnets.{j}.{layer}.{rest}"),
    ("decoder.up.{up}.upsample.conv.{param}", "decoder.up_blocks.{up}.upsamplers.0.conv.{param}"),
    ("{side}.mid.block_{mid}.{layer}.{rest}", "{side}.mid_block.resnets.{mid}.{layer}.{rest}"),
    ("{side}.mid.attn_1.{attn}.{param}", "{side}.mid_block.attentions.0.{attn}.{param}"),
)

# AudioLDM HiFi-GAN (without the `vocoder.` prefix) ↔ SpeechT5HifiGan: only the upsampler's name differs
VOCODER_RULES: tuple[tuple[str, str], ...] = (
    ("ups.{i}.{param}", "upsampler.{i}.{param}"),
    ("conv_pre.{param}", "conv_pre.{param}"),
    ("conv_post.{param}", "conv_post.{param}"),
    ("resblocks.{i}.{convs}.{j}.{param}", "resblocks.{i}.{convs}.{j}.{param}"),
)

_SLOT = re.compile(r"\{(\w+)\}")


def _compile(template: str, side: str) -> re.Pattern:
    """TEMPLATE as a regex over keys of SIDE ('original' or 'diffusers'), one named group per slot."""
    out, pos = [], 0
    for m in _SLOT.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        out.append(f"(?P<{m[1]}>{getattr(FIELDS[m[1]], side)})")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


@dataclass(frozen=True)
class KeyMap:
    """A rule table compiled for both directions."""

    rules: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        compiled = [(_compile(o, "original"), _compile(d, "diffusers"), o, d) for o, d in self.rules]
        object.__setattr__(self, "_compiled", compiled)

    def _convert(self, key: str, n_levels: int, *, forward: bool) -> str:
        for o_re, d_re, o_tpl, d_tpl in self._compiled:
            m = (o_re if forward else d_re).fullmatch(key)
            if m is None:
                continue
            values = {name: (FIELDS[name].forward if forward else FIELDS[name].backward)(value, n_levels)
                      for name, value in m.groupdict().items()}
            return (d_tpl if forward else o_tpl).format(**values)
        raise KeyError(key)

    def to_diffusers(self, key: str, n_levels: int = 0) -> str:
        return self._convert(key, n_levels, forward=True)

    def to_original(self, key: str, n_levels: int = 0) -> str:
        return self._convert(key, n_levels, forward=False)


VAE_KEYS = KeyMap(VAE_RULES)
VOCODER_KEYS = KeyMap(VOCODER_RULES)


def vae_key_to_diffusers(key: str, n_levels: int) -> str:
    """One AudioLDM (LDM) VAE key → diffusers AutoencoderKL key."""
    return VAE_KEYS.to_diffusers(key, n_levels)


def vae_key_to_original(key: str, n_levels: int) -> str:
    """One diffusers AutoencoderKL key → AudioLDM (LDM) VAE key."""
    return VAE_KEYS.to_original(key, n_levels)


def vocoder_key_to_diffusers(key: str) -> str:
    """AudioLDM HiFi-GAN key (without the `vocoder.` prefix) → SpeechT5HifiGan key."""
    return VOCODER_KEYS.to_diffusers(key)


def vocoder_key_to_original(key: str) -> str:
    """SpeechT5HifiGan key → AudioLDM HiFi-GAN key (without the `vocoder.` prefix)."""
    return VOCODER_KEYS.to_original(key)


_ATTN_PROJ_WEIGHT = re.compile(r"(encoder|decoder)\.mid\.attn_1\.(q|k|v|proj_out)\.weight")


def _is_attn_proj_weight(original_key: str) -> bool:
    return bool(_ATTN_PROJ_WEIGHT.fullmatch(original_key))


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace weight-norm pairs (`X.weight_g`, `X.weight_v`, torch's dim=0 convention) by `X.weight`,
    as HiFi-GAN's remove_weight_norm does; plain keys pass through."""
    out = {k: v for k, v in state.items() if not k.endswith((".weight_g", ".weight_v"))}
    for key in state:
        if key.endswith(".weight_v"):
            base = key[: -len("_v")]
            v, g = state[key], state.get(base + "_g")
            if g is None:
                raise CuratorError(f"weight-norm key {key!r} has no matching {base + '_g'!r}")
            norm = v.flatten(1).norm(dim=1).reshape(-1, *([1] * (v.ndim - 1)))
            out[base] = g * v / norm
    return out


def original_vae_to_diffusers(
    state: dict[str, torch.Tensor], n_levels: int, *, where: str = VAE_WEIGHTS
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """pytorch_model_vae.bin (AudioLDM names) → (AutoencoderKL state dict, SpeechT5HifiGan state dict)."""
    vae, vocoder = {}, {}
    for key, tensor in fold_weight_norm(state).items():
        try:
            if key.startswith("vocoder."):
                vocoder[vocoder_key_to_diffusers(key[len("vocoder."):])] = tensor
                continue
            new = vae_key_to_diffusers(key, n_levels)
        except KeyError:
            raise CuratorError(f"{where}: unexpected key {key!r} (not an AudioLDM VAE/HiFi-GAN state dict)") from None
        # LDM attention projections are 1×1 convolutions; diffusers uses linear layers
        vae[new] = tensor[:, :, 0, 0] if _is_attn_proj_weight(key) and tensor.ndim == 4 else tensor
    return vae, vocoder


def diffusers_vae_to_original(
    vae_state: dict[str, torch.Tensor], vocoder_state: dict[str, torch.Tensor], n_levels: int
) -> dict[str, torch.Tensor]:
    """Inverse of original_vae_to_diffusers (the vocoder's unused mean/scale buffers are dropped)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in vae_state.items():
        old = vae_key_to_original(key, n_levels)
        out[old] = tensor[:, :, None, None] if _is_attn_proj_weight(old) and tensor.ndim == 2 else tensor
    for key, tensor in vocoder_state.items():
        if key in ("mean", "scale"):  # normalize_before=False: not part of AudioLDM's HiFi-GAN
            continue
        out[f"vocoder.{vocoder_key_to_original(key)}"] = tensor
    return out
