"""ClapScorer on a tiny transformers CLAP folder: features, cosine scores, batching, text cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from curator.backends import Scorer
from db.errors import CuratorError
from curator.scoring.clap import load_clap
from curator.scoring.specs import make_scorer, parse_model_spec
from curator.scoring.tiny import build_tiny_clap


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_clap(tmp_path_factory.mktemp("clap") / "tiny-clap", seed=0)


@pytest.fixture
def scorer(tiny_dir):
    return load_clap(str(tiny_dir), batch_size=4)


def _wave(seconds: float, freq: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(48_000 * seconds)) / 48_000
    rng = np.random.default_rng(seed)
    return (0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def test_scorer_implements_the_protocol(scorer, tiny_dir):
    assert isinstance(scorer, Scorer)
    assert scorer.backend == "clap" and scorer.sample_rate == 48_000
    assert scorer.name == "tiny-clap" and scorer.checkpoint == str(tiny_dir.resolve()) and scorer.file_hash is None


@pytest.mark.parametrize("seconds", [10.0, 3.3, 0.4])
def test_batched_features_equal_the_feature_extractor(scorer, seconds):
    waves = [_wave(seconds, 300 + 200 * i, seed=i) for i in range(3)]
    ours, is_longer = scorer.featurizer(waves)
    theirs = scorer.featurizer.extractor(waves, sampling_rate=48_000, truncation="rand_trunc", return_tensors="pt")
    assert ours.shape == theirs["input_features"].shape == (3, 1, 1001, 64)
    torch.testing.assert_close(ours, theirs["input_features"].float(), rtol=0, atol=1e-4)
    assert not is_longer.any()


def test_long_clips_keep_their_first_ten_seconds(scorer):
    long = _wave(10.24, 440)  # Tango's clip length, at 48 kHz
    head = long[:480_000]
    ours, _ = scorer.featurizer([long])
    theirs = scorer.featurizer.extractor([head], sampling_rate=48_000, truncation="rand_trunc", return_tensors="pt")
    torch.testing.assert_close(ours, theirs["input_features"].float(), rtol=0, atol=1e-4)
    # deterministic: the same clip scores the same every time (no random crop)
    assert scorer.score(["a bell rings"], [long])[0] == scorer.score(["a bell rings"], [long])[0]


def test_score_is_the_cosine_of_the_model_embeddings(scorer):
    texts = ["a dog barks while a man speaks", "thunder rumbles after lightning"]
    waves = [_wave(2.0, 300), _wave(5.0, 900, seed=1)]
    scores = scorer.score(texts, waves)
    assert scores.dtype == np.float64 and scores.shape == (2,)
    model = scorer.model
    with torch.no_grad():  # transformers' recipe on the waveforms laion-clap feeds it (16-bit round trip)
        tokens = scorer.tokenizer(texts, padding=True, return_tensors="pt")
        feats = scorer.featurizer.extractor([_laion_int16_round_trip(w) for w in waves], sampling_rate=48_000,
                                            truncation="rand_trunc", return_tensors="pt")
        out = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                    input_features=feats["input_features"].float())
    expected = F.cosine_similarity(out.text_embeds, out.audio_embeds, dim=-1).numpy()
    np.testing.assert_allclose(scores, expected, atol=2e-5)
    assert np.all(np.abs(scores) <= 1.0 + 1e-6)


def test_batched_scores_equal_one_at_a_time(tiny_dir):
    batched = load_clap(str(tiny_dir), batch_size=8)
    single = load_clap(str(tiny_dir), batch_size=1)
    texts = ["a cat meows twice", "a cat meows twice", "waves crash on the shore", "a siren wails and fades", "a cat meows twice"]
    waves = [_wave(1.0 + i, 200 + 100 * i, seed=i) for i in range(5)]
    one_by_one = np.array([single.score([t], [w])[0] for t, w in zip(texts, waves)])
    np.testing.assert_allclose(batched.score(texts, waves), one_by_one, atol=1e-5)


def test_each_distinct_text_is_embedded_once(scorer):
    texts = ["a bell rings loudly"] * 4 + ["rain falls on a metal roof"] * 2
    waves = [_wave(1.0, 200 + 50 * i) for i in range(6)]
    scorer.score(texts, waves)
    assert scorer.text_passes == 2 and scorer.audio_passes == 6
    scorer.score(texts[:2], waves[:2])
    assert scorer.text_passes == 2  # cached across calls
    scorer.clear_text_cache()
    scorer.score(texts[:1], waves[:1])
    assert scorer.text_passes == 3


def test_bad_inputs(scorer):
    with pytest.raises(CuratorError, match="one text per waveform"):
        scorer.score(["a"], [])
    with pytest.raises(CuratorError, match="non-empty mono"):
        scorer.score(["a"], [np.zeros((2, 100), dtype=np.float32)])
    assert scorer.score([], []).shape == (0,)


def test_offline_hub_id_and_missing_folder_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CuratorError, match="cannot load CLAP model 'laion/clap-htsat-unfused'") as info:
        load_clap("laion/clap-htsat-unfused")
    assert "\n" not in str(info.value)
    with pytest.raises(CuratorError, match="does not exist"):
        load_clap(str(tmp_path / "nowhere"))
    with pytest.raises(CuratorError, match="CLAP checkpoint .* does not exist"):
        make_scorer(f"m1={tmp_path / 'absent.pt'}")
    with pytest.raises(CuratorError, match="not a torch device"):
        load_clap(str(tmp_path), device="gpu-please")


def test_model_specs():
    assert parse_model_spec("m1=/ckpt/630k-audioset-best.pt") == ("m1", "/ckpt/630k-audioset-best.pt")
    assert parse_model_spec("laion/clap-htsat-unfused") == (None, "laion/clap-htsat-unfused")
    assert parse_model_spec("judge=world-judge-a") == ("judge", "world-judge-a")
    assert parse_model_spec("./dir/a=b.pt") == (None, "./dir/a=b.pt")  # '=' inside a path is not a name
    with pytest.raises(CuratorError, match="no checkpoint after m1="):
        parse_model_spec("m1=")
    with pytest.raises(CuratorError, match="empty NAME"):
        parse_model_spec("=x.pt")


# laion-clap's HTSAT-tiny audio config and inference modes, as ClapFeatureExtractor settings
# (laion/clap-htsat-unfused's preprocessor_config.json; the fused one has truncation "fusion")
LAION_UNFUSED = dict(sampling_rate=48_000, fft_window_size=1024, hop_length=480, feature_size=64, frequency_min=50,
                     frequency_max=14_000, max_length_s=10, truncation="rand_trunc", padding="repeatpad")


def _extractor(**changes):
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(**{**LAION_UNFUSED, **changes})


def _tiny_model(**audio):
    from transformers import ClapModel

    from curator.scoring.tiny import tiny_clap_config

    config = tiny_clap_config(300)
    for key, value in audio.items():
        setattr(config.audio_config, key, value)
    torch.manual_seed(0)
    return ClapModel(config).eval()


@pytest.mark.parametrize("setting, value, named", [
    ("frequency_min", 0, "frequency_min 0 (laion: 50)"),
    ("frequency_max", 8000, "frequency_max 8000 (laion: 14000)"),
    ("fft_window_size", 2048, "fft_window_size 2048 (laion: 1024)"),
    ("hop_length", 320, "hop_length 320 (laion: 480)"),
    ("feature_size", 32, "feature_size 32 (laion: 64)"),
    ("sampling_rate", 44_100, "sampling_rate 44100 (laion: 48000)"),
    ("max_length_s", 20, "max_length_s 20 (laion: 10)"),
    ("truncation", "fusion", "truncation 'fusion' (laion: 'rand_trunc')"),
    ("padding", "pad", "padding 'pad' (laion: 'repeatpad')"),
    ("window", "hamming", "window 'hamming' (laion: 'hann')"),
])
def test_a_feature_setting_other_than_laions_is_named(scorer, setting, value, named):
    from curator.scoring.clap import ClapScorer

    with pytest.raises(CuratorError, match="differs from laion-clap's unfused settings") as info:
        ClapScorer(scorer.model, scorer.tokenizer, _extractor(**{setting: value}), name="x", checkpoint="x")
    message = str(info.value)
    assert message.split(": ", 1)[1].split(";")[0] == named  # exactly the one that differs
    assert "\n" not in message


def test_transformers_default_extractor_is_refused_for_an_unfused_model(scorer):
    """ClapFeatureExtractor()'s defaults are the fused model's, with fmin 0: two settings named."""
    from transformers import ClapFeatureExtractor

    from curator.scoring.clap import ClapScorer

    with pytest.raises(CuratorError, match=r"frequency_min 0 \(laion: 50\), truncation 'fusion' \(laion: 'rand_trunc'\)"):
        ClapScorer(scorer.model, scorer.tokenizer, ClapFeatureExtractor(), name="x", checkpoint="x")


def test_fused_models_need_laions_fused_settings(scorer):
    from curator.scoring.clap import ClapScorer

    fused = _tiny_model(enable_fusion=True)
    with pytest.raises(CuratorError, match=r"laion-clap's fused settings: truncation 'rand_trunc' \(laion: 'fusion'\)"):
        ClapScorer(fused, scorer.tokenizer, _extractor(), name="x", checkpoint="x")
    ok = ClapScorer(fused, scorer.tokenizer, _extractor(truncation="fusion"), name="x", checkpoint="x")
    features, is_longer = ok.features([_wave(2.0, 300)])
    assert features.shape == (1, 4, 1001, 64) and not is_longer.any()


def test_extractor_that_does_not_fit_the_audio_encoder_is_refused(scorer):
    from curator.scoring.clap import ClapScorer

    with pytest.raises(CuratorError, match="makes 64 mel bins, the audio encoder of x takes 32"):
        ClapScorer(_tiny_model(num_mel_bins=32), scorer.tokenizer, _extractor(), name="x", checkpoint="x")
    with pytest.raises(CuratorError, match="makes 1001 frames, more than the audio encoder of x takes"):
        ClapScorer(_tiny_model(spec_size=128), scorer.tokenizer, _extractor(), name="x", checkpoint="x")


def _laion_int16_round_trip(x: np.ndarray) -> np.ndarray:
    """laion-clap's int16_to_float32(float32_to_int16(x)) (training/data.py), applied in hook.py."""
    x = np.clip(x, a_min=-1.0, a_max=1.0)
    return ((x * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)


def _laion_log_mel(y: np.ndarray) -> np.ndarray:
    """laion's unfused front end (torchlibrosa's STFT + librosa mel filters, ref 1.0, amin 1e-10,
    top_db None) with the HTSAT-tiny settings, computed by librosa: (frames, 64) in dB."""
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=48_000, n_fft=1024, hop_length=480, win_length=1024, window="hann",
                                         center=True, pad_mode="reflect", power=2.0, n_mels=64, fmin=50, fmax=14_000)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T


def _laion_fit(y: np.ndarray, n: int = 480_000) -> np.ndarray:
    """laion's "repeatpad" filling; a longer clip keeps its first 10 s (laion takes a random crop)."""
    if y.shape[0] >= n:
        return y[:n]
    tiled = np.tile(y, n // y.shape[0])
    return np.pad(tiled, (0, n - tiled.shape[0]))


@pytest.mark.parametrize("seconds", [4.0, 10.24])
def test_features_of_a_16k_clip_equal_laions_librosa_path(scorer, tmp_path, seconds):
    """A 16 kHz clip from the store, read at 48 kHz and featurized by the scorer, against
    laion-clap's path: librosa.load(sr=48000), its int16 round trip, its mel settings."""
    import librosa
    from scipy.signal import resample_poly

    from curator.audio import AudioStore, encode_wav

    rng = np.random.default_rng(5)
    t = np.arange(int(16_000 * seconds)) / 16_000
    clip = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (300 + 400 * t) * t) * (t % 1 < 0.6)
            + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    store = AudioStore(tmp_path / "audio")
    _, rel = store.put_wave(clip, 16_000)
    ours_wave = store.read(rel, target_sr=48_000).wave
    laion_wave, sr = librosa.load(store.resolve(rel), sr=48_000)
    assert sr == 48_000 and np.array_equal(ours_wave, laion_wave)  # the same resampler, bit for bit

    ours = scorer.features([ours_wave])[0][0, 0].numpy().astype(np.float64)  # (1001, 64)
    reference = _laion_log_mel(_laion_fit(_laion_int16_round_trip(laion_wave)))
    assert ours.shape == reference.shape == (1001, 64)
    assert np.abs(ours - reference).max() < 1e-3  # dB, every frame of all 64 bands
    # the 10 bands above 8 kHz hold almost nothing; they are where resamplers differ
    top = reference[:, -10:].mean()
    assert -100 < top < -80

    # the test tells resamplers apart: scipy's polyphase filter leaves 20-25 dB more there
    decoded = store.read(rel, target_sr=16_000).wave
    poly = resample_poly(decoded.astype(np.float64), 3, 1).astype(np.float32)
    assert scorer.features([poly])[0][0, 0, :, -10:].numpy().mean() - top > 10


def test_world_judges_resolve_through_make_judge(monkeypatch):
    import importlib

    world = importlib.import_module("curator.world")
    asked = []

    class Judge:
        name = checkpoint = "world-judge-b"
        file_hash, backend, sample_rate = None, "world", 16_000

        def score(self, texts, waves):
            return np.zeros(len(texts))

    monkeypatch.setattr(world, "make_judge", lambda name: asked.append(name) or Judge(), raising=False)
    name, scorer = make_scorer("j2=world-judge-b")
    assert (name, asked, scorer.backend) == ("j2", ["world-judge-b"], "world")
    name, _ = make_scorer("world-judge-b")
    assert name == "world-judge-b"


def test_empty_and_very_long_captions(scorer):
    long = " ".join(["a dog barks while a man speaks"] * 300)  # far past laion's 77 tokens
    wave = _wave(1.0, 300)
    scores = scorer.score(["", long], [wave, wave])
    assert np.all(np.isfinite(scores))
    ids = scorer.tokenizer([long], truncation=True, max_length=77)["input_ids"][0]
    assert len(ids) == 77
    prefix = scorer.tokenizer.decode(ids[1:-1])
    torch.testing.assert_close(scorer.text_embeddings([long]), scorer.text_embeddings([prefix]), rtol=0, atol=1e-5)
