"""Tiny CLAP models of the real classes, in the real on-disk layouts, built offline.

No weights can be downloaded here, so tests, the demo and the benchmark use a seeded
`ClapModel` with a small HTSAT (8 channels, 2 stages of 2 Swin blocks, window 8, the real
256×256 spectrogram input and 64 mel bins) and a small roberta (2 layers, hidden 64), a
byte-level BPE tokenizer trained with the `tokenizers` library on a built-in caption corpus,
and the real `ClapFeatureExtractor` settings (48 kHz, hop 480, 10 s).

- `build_tiny_clap(folder)`: a transformers CLAP folder (config.json, weights, tokenizer,
  preprocessor_config.json) — what `ClapModel.from_pretrained` / `curator score --model FOLDER` read.
- `build_tiny_laion(folder)`: `tiny-630k.pt` in laion-clap's format (see curator.scoring.laion)
  plus `tokenizer/` (pass it as `--tokenizer`), loaded through the same code as 630k-best.pt.
"""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "a dog barks while a man speaks", "a woman talks and then a baby cries", "water runs from a tap",
    "a car engine idles before it revs", "birds chirp in the distance followed by wind",
    "rain falls on a metal roof", "a crowd cheers and applauds", "a cat meows twice",
    "footsteps on gravel then a door closes", "an airplane flies overhead", "a bell rings loudly",
    "people laugh as music plays", "thunder rumbles after lightning", "a motorcycle accelerates away",
    "a clock ticks in a quiet room", "a train horn blows as it passes", "typing on a keyboard",
    "a siren wails and fades", "waves crash on the shore", "a drill whirs intermittently",
]
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]  # roberta's ids 0, 1, 2, 3


def build_tiny_tokenizer(folder: str | Path, *, vocab_size: int = 400):
    """A roberta-style byte-level BPE tokenizer (trained offline on CORPUS), saved to FOLDER."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=77)
    fast.save_pretrained(str(folder))
    return fast


def tiny_clap_config(vocab_size: int):
    from transformers import ClapConfig

    text = dict(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=1,
                intermediate_size=128, max_position_embeddings=80, type_vocab_size=1, layer_norm_eps=1e-5,
                pad_token_id=1, bos_token_id=0, eos_token_id=2)
    audio = dict(patch_embeds_hidden_size=8, depths=[2, 2], num_attention_heads=[1, 2], window_size=8,
                 spec_size=256, num_mel_bins=64, hidden_size=16, num_hidden_layers=2, num_classes=10,
                 patch_size=4, patch_stride=[4, 4], enable_fusion=False)
    return ClapConfig(text_config=text, audio_config=audio, projection_dim=16, projection_hidden_act="relu")


def build_tiny_model(vocab_size: int, seed: int = 0):
    """A seeded tiny `ClapModel` (eval mode)."""
    from transformers import ClapModel

    torch.manual_seed(seed)
    model = ClapModel(tiny_clap_config(vocab_size)).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so the mapping of bn0 is exercised
        bn = model.audio_model.audio_encoder.batch_norm
        g = torch.Generator().manual_seed(seed + 1)
        bn.running_mean.copy_(-40 + 5 * torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(200 + 50 * torch.rand(bn.num_features, generator=g))
    return model


def _feature_extractor():
    from transformers import ClapFeatureExtractor

    # the settings of laion/clap-htsat-unfused's preprocessor (48 kHz, 64 mels, hop 480, 10 s)
    return ClapFeatureExtractor(feature_size=64, sampling_rate=48_000, hop_length=480, max_length_s=10,
                                fft_window_size=1024, frequency_min=50, frequency_max=14_000,
                                truncation="rand_trunc", padding="repeatpad")


def build_tiny_processor(folder: str | Path):
    """Tokenizer + feature extractor in FOLDER (a valid `--tokenizer` source)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(folder)
    extractor = _feature_extractor()
    extractor.save_pretrained(str(folder))
    return tokenizer, extractor


def build_tiny_clap(folder: str | Path, seed: int = 0) -> Path:
    """A tiny transformers CLAP folder (what `ClapModel.from_pretrained` reads)."""
    folder = Path(folder)
    tokenizer, _ = build_tiny_processor(folder)
    model = build_tiny_model(len(tokenizer), seed)
    model.save_pretrained(str(folder))
    return folder


def build_tiny_laion(folder: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """(FOLDER/tiny-630k.pt in laion-clap's format, FOLDER/tokenizer/ for `--tokenizer`)."""
    from curator.scoring.laion import save_laion_checkpoint

    folder = Path(folder)
    tokenizer, _ = build_tiny_processor(folder / "tokenizer")
    model = build_tiny_model(len(tokenizer), seed)
    checkpoint = save_laion_checkpoint(model, folder / "tiny-630k.pt")
    return checkpoint, folder / "tokenizer"
