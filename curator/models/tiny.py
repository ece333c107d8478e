"""A tiny Tango for tests and offline demos: the same classes as the real one (T5EncoderModel,
UNet2DConditionModel, AudioLDM-shaped AutoencoderKL with 8 latent channels, SpeechT5HifiGan,
64 mel bins at 16 kHz, the SD-2.1 v-prediction DDPM schedule), randomly initialised from a seed
and saved in the real declare-lab layout, so it is loaded through `load_tango` exactly like a
downloaded checkpoint (including the AudioLDM → diffusers key mapping of the VAE and vocoder).

API: `tiny_tango(seed=0) -> Tango` (in memory), `build_tiny_tango(folder, seed=0) -> Path`.
The tokenizer is a T5 (Unigram) tokenizer over a small word + character vocabulary, built offline (saved in `text_encoder/` beside the weights).
"""

from __future__ import annotations

from pathlib import Path

import torch

from curator.models.tango import Tango, save_tango
from curator.models.tango.config import SD21_SCHEDULER_CONFIG, StftConfig, VaeConfig
from curator.models.tango.parts import stft_buffers, unet_from_config, vae_from_config, vocoder_from_config
from curator.paper import SAMPLE_RATE

# Words of AudioCaps-like captions (and of the miniature world's grammar); anything else is <unk>.
_WORDS = """
a an the and or of in on at to from with by for as is are was be being while before after then
followed finally later during until again twice once repeatedly continuously briefly loudly softly
quietly distant nearby close far background foreground slowly quickly rapidly gently steadily
man woman men women person people child children baby babies boy girl crowd audience group
speaks speaking talks talking speech voice voices says whispers whispering shouts shouting yells
yelling laughs laughing laughter cries crying sings singing song music plays playing cheers
cheering applause claps clapping screams screaming coughs coughing sneezes breathing snoring
dog dogs barks barking bark cat cats meows meowing bird birds chirp chirps chirping tweeting
sing rooster crows crowing duck ducks quack quacking goose geese cow cows moo mooing horse horses
neighs galloping sheep bleating pig pigs oinking frog frogs croaking insects buzzing bee bees
fly flies cricket crickets owl hoots animal animals
car cars truck trucks vehicle vehicles engine engines motor motorcycle bus train trains horn
horns honks honking siren sirens passes passing drives driving accelerates accelerating idles
idling revving revs brakes squeal squealing tires skidding traffic road street highway
airplane plane aircraft jet helicopter flying overhead takes off landing propeller boat boats
water waves ocean sea river stream splashing splashes flowing running drips dripping rain
raining thunder storm wind blowing blows gusts rustling leaves trees fire crackling burning
bell bells ringing rings ding chimes clock ticking tick tock alarm beeps beeping beep buzzer
phone telephone door doors knocking knocks slams slamming opens closing closes creaks creaking
footsteps walking steps stomping running jumping falling drops dropping crashes crash breaking
glass dishes clanking clanging banging bangs hammer hammering drilling drill saw sawing
machine machinery motorized tool tools typing keyboard computer printer paper crumpling
tearing scraping rubbing sliding rolling ball bouncing toilet flushing sink faucet shower
cooking frying sizzling pan kitchen food eating chewing drinking pouring
gunshot gunshots gun guns explosion explosions fireworks pops popping bursts
guitar piano drum drums drumming violin flute trumpet whistle whistling whistles
electronic static noise noises hum humming buzz rumble rumbling roar roaring hiss hissing
sound sounds sudden loud soft low high pitched pitch short long several many few multiple
two three four one first second another other some small large big little
inside outside indoor outdoor room hall street park forest field city farm market station
""".split()
_CHARS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,.!?'-;:()\"")
SPECIAL = ["<pad>", "</s>", "<unk>"]  # T5's ids: pad 0, eos 1, unk 2
MAX_LENGTH = 128


def tiny_tokenizer():
    """A FLAN-T5-style tokenizer (transformers' T5 tokenizer over a `tokenizers` Unigram model) with a
    vocabulary of caption words plus single characters, so any text tokenizes without <unk>; ids
    as T5's (pad 0, eos 1, unk 2), `</s>` appended. Built offline."""
    from transformers import T5TokenizerFast

    pieces: dict[str, float] = {}
    for token in SPECIAL:
        pieces.setdefault(token, 0.0)
    pieces.setdefault("\u2581", -2.0)  # the word-boundary marker alone
    for word in _WORDS:
        pieces.setdefault(f"\u2581{word}", -1.0)
    for ch in _CHARS:
        pieces.setdefault(ch, -10.0)
        pieces.setdefault(f"\u2581{ch}", -9.0)
    return T5TokenizerFast(vocab=list(pieces.items()), extra_ids=0, model_max_length=MAX_LENGTH)


TINY_UNET = {
    "sample_size": [8, 2],
    "in_channels": 8,
    "out_channels": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "attention_head_dim": [2, 4],
    "cross_attention_dim": 32,
    "norm_num_groups": 32,
    "use_linear_projection": True,  # as Tango's (arXiv 2404.09956 §3.1)
    "upcast_attention": True,
}

TINY_VAE = {  # AudioLDM's VAE config shape (vae_config.json), scaled down
    "image_key": "fbank",
    "subband": 1,
    "embed_dim": 8,
    "time_shuffle": 1,
    "ddconfig": {"double_z": True, "z_channels": 8, "resolution": 256, "downsample_time": False, "in_channels": 1,
                 "out_ch": 1, "ch": 32, "ch_mult": [1, 1, 2], "num_res_blocks": 1, "attn_resolutions": [],
                 "dropout": 0.0},
    "scale_factor": 0.75,
}

TINY_VOCODER = {  # AudioLDM's HiFi-GAN shape: upsampling 5·4·2·2·2 = 160 = hop length
    "resblock": "1",
    "upsample_rates": [5, 4, 2, 2, 2],
    "upsample_kernel_sizes": [16, 16, 8, 4, 4],
    "upsample_initial_channel": 64,
    "resblock_kernel_sizes": [3],
    "resblock_dilation_sizes": [[1, 3]],
    "num_mels": 64,
    "sampling_rate": SAMPLE_RATE,
}


def tiny_tango(seed: int = 0) -> Tango:
    """The tiny Tango in memory, deterministic in `seed`."""
    from diffusers import DDPMScheduler
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    t5 = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                  feed_forward_proj="gated-gelu", relative_attention_num_buckets=8,
                  relative_attention_max_distance=32, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                  decoder_start_token_id=0, is_encoder_decoder=False, use_cache=False)
    text_encoder = T5EncoderModel(t5).eval().requires_grad_(False)
    unet = unet_from_config(TINY_UNET).eval()
    vae = vae_from_config(VaeConfig(**TINY_VAE), "tiny vae").eval()
    vocoder = vocoder_from_config(TINY_VOCODER).eval()
    _calibrate_level(vocoder)
    stft = StftConfig()  # AudioLDM's: 1024/160/1024, 64 mels, 16 kHz, 0–8000 Hz
    buffers = stft_buffers(stft)
    return Tango(
        tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, vae=vae, vocoder=vocoder,
        scheduler=DDPMScheduler(**SD21_SCHEDULER_CONFIG), stft=stft, mel_basis=buffers["mel_basis"],
        config={"text_encoder_name": "tiny-flan-t5", "scheduler_name": "stabilityai/stable-diffusion-2-1",
                "unet_model_name": None, "unet_model_config_path": "unet_config.json", "snr_gamma": None,
                "freeze_text_encoder": True, "uncondition": False},
        source=f"tiny(seed={seed})", stft_buffers=buffers,
    )


def _calibrate_level(vocoder, rms: float = 0.1) -> None:
    """Scale the random vocoder's output layer so its clips are audible (RMS ≈ 0.1 on a typical
    log-mel) instead of ~1e-11, which 16-bit WAV would round to silence."""
    probe = torch.Generator().manual_seed(1234)
    mel = torch.randn(1, 32, vocoder.config.model_in_dim, generator=probe) - 5.0  # (1, frames, mels)
    with torch.no_grad():
        level = vocoder(mel).std().item()
        if level > 0:
            vocoder.conv_post.weight.mul_(rms / level)
            vocoder.conv_post.bias.mul_(rms / level)


def build_tiny_tango(folder: str | Path, seed: int = 0) -> Path:
    """Build the tiny Tango and save it in the declare-lab layout at FOLDER; returns FOLDER."""
    return save_tango(tiny_tango(seed), folder)


# --------------------------------------------------------------------------- tiny AudioLDM


def _tiny_roberta_tokenizer():
    """A byte-level BPE (RoBERTa-style, as CLAP's text branch uses) trained offline on the word list."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([" ".join(_WORDS[i:i + 12]) for i in range(0, len(_WORDS), 12)], trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    return RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>",
                                model_max_length=77)


def tiny_audioldm_pipeline(seed: int = 0):
    """A diffusers AudioLDMPipeline of tiny components (CLAP text encoder, film-conditioned UNet,
    1-channel mel VAE, HiFi-GAN with hop 160 at 16 kHz)."""
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(seed)
    tokenizer = _tiny_roberta_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=(8, 16),
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=8, class_embeddings_concat=True,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=1, out_channels=1, norm_num_groups=8,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4)
    text_encoder = ClapTextModelWithProjection(ClapTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=8, intermediate_size=37, layer_norm_eps=1e-05,
        num_attention_heads=1, num_hidden_layers=1, pad_token_id=1, vocab_size=len(tokenizer), projection_dim=8))
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=16, sampling_rate=SAMPLE_RATE, upsample_initial_channel=32, upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[10, 8, 4, 4, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False))
    _calibrate_level(vocoder)
    return AudioLDMPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            vocoder=vocoder)


def build_tiny_audioldm(folder: str | Path, seed: int = 0) -> Path:
    """The tiny AudioLDMPipeline saved with save_pretrained (model_index.json layout)."""
    folder = Path(folder)
    tiny_audioldm_pipeline(seed).save_pretrained(folder)
    return folder


def tiny_audioldm2_pipeline(seed: int = 0):
    """A diffusers AudioLDM2Pipeline of tiny components (CLAP + FLAN-T5-style encoders, GPT-2
    language model, projection model, the two-conditioning AudioLDM2 UNet, mel VAE, HiFi-GAN)."""
    from diffusers import AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel, AutoencoderKL
    from diffusers import DDIMScheduler
    from transformers import (ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig,
                              GPT2Config, GPT2LMHeadModel, SpeechT5HifiGan, SpeechT5HifiGanConfig, T5Config,
                              T5EncoderModel)

    torch.manual_seed(seed)
    tokenizer = _tiny_roberta_tokenizer()
    tokenizer_2 = tiny_tokenizer()
    unet = AudioLDM2UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=([None, 16, 32], [None, 16, 32]),
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False)
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=1, out_channels=1,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4)
    text_config = ClapTextConfig(bos_token_id=0, eos_token_id=2, hidden_size=16, intermediate_size=37,
                                 layer_norm_eps=1e-05, num_attention_heads=2, num_hidden_layers=2, pad_token_id=1,
                                 vocab_size=len(tokenizer), projection_dim=16)
    audio_config = ClapAudioConfig(spec_size=64, window_size=4, num_mel_bins=64, intermediate_size=37,
                                   layer_norm_eps=1e-05, depths=[2, 2], num_attention_heads=[2, 2],
                                   num_hidden_layers=2, hidden_size=192, projection_dim=16, patch_size=2,
                                   patch_stride=2, patch_embed_input_channels=4)
    text_encoder = ClapModel(ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config.to_dict(),
                                        projection_dim=16))
    feature_extractor = ClapFeatureExtractor(hop_length=7900)
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), d_model=32, d_ff=37, d_kv=8, num_heads=2,
                                             num_layers=2, is_encoder_decoder=False, use_cache=False))
    language_model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=2, vocab_size=1000, n_ctx=99, n_positions=99))
    language_model.config.max_new_tokens = 8
    projection_model = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32, langauge_model_dim=16)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=16, sampling_rate=SAMPLE_RATE, upsample_initial_channel=32, upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[10, 8, 4, 4, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False))
    _calibrate_level(vocoder)
    return AudioLDM2Pipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                             projection_model=projection_model, language_model=language_model, tokenizer=tokenizer,
                             tokenizer_2=tokenizer_2, feature_extractor=feature_extractor, unet=unet,
                             scheduler=scheduler, vocoder=vocoder)


def build_tiny_audioldm2(folder: str | Path, seed: int = 0) -> Path:
    """The tiny AudioLDM2Pipeline saved with save_pretrained (model_index.json layout)."""
    folder = Path(folder)
    tiny_audioldm2_pipeline(seed).save_pretrained(folder)
    return folder
