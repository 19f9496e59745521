"""Tiny, randomly initialised models built from a config at test time (nothing from the hub).

They go through exactly the loading code the services use for real models; their output is
noise-like but has the real shape, sample rate and timing behaviour.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CORPUS = [
    "hello world this is a test of the speech stack",
    "the quick brown fox jumps over the lazy dog",
    "today is a wonderful day to build something people love",
    "hola mundo esto es una prueba", "bonjour le monde ceci est un test", "hallo welt das ist ein test",
]
XTTS_LANGS = ["en", "es", "fr", "de"]


def build_vits(out: Path, speakers: list[str] | None = None) -> Path:
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    args = VitsArgs(
        hidden_channels=16, hidden_channels_ffn_text_encoder=32, num_heads_text_encoder=2,
        num_layers_text_encoder=1, num_layers_posterior_encoder=1, num_layers_flow=1,
        kernel_size_flow=3, kernel_size_posterior_encoder=3, use_sdp=False, resblock_type_decoder="2",
        resblock_kernel_sizes_decoder=[3], resblock_dilation_sizes_decoder=[[1, 3]],
        upsample_rates_decoder=[8, 8, 4], upsample_kernel_sizes_decoder=[16, 16, 8],
        upsample_initial_channel_decoder=32, periods_multi_period_discriminator=[2],
        init_discriminator=False, use_speaker_embedding=bool(speakers), speaker_embedding_channels=16)
    config = VitsConfig(
        model_args=args,
        audio=BaseAudioConfig(sample_rate=22050, fft_size=1024, hop_length=256, win_length=1024, num_mels=80),
        use_phonemes=False, text_cleaner="english_cleaners",
        characters=CharactersConfig(
            characters_class="TTS.tts.models.vits.VitsCharacters", pad="<PAD>", eos="<EOS>", bos="<BOS>",
            blank="<BLNK>", characters="abcdefghijklmnopqrstuvwxyz", punctuations=" !'(),-.:;?", phonemes=""),
        add_blank=True, speakers=list(speakers or []), test_sentences=[])
    torch.manual_seed(0)
    model = Vits(config)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, out / "model.pth")
    config.save_json(str(out / "config.json"))
    return out


def build_xtts(out: Path, speakers: tuple[str, ...] = ("Ana Random", "Bo Random")) -> Path:
    """XTTS v2 layout with a tiny GPT (the HiFiGAN decoder and speaker encoder keep their fixed size)."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from tokenizers.pre_tokenizers import Whitespace
    from tokenizers.trainers import BpeTrainer
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts, XttsArgs, XttsAudioConfig

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.train_from_iterator(CORPUS, BpeTrainer(vocab_size=160, show_progress=False, special_tokens=[
        "[STOP]", "[UNK]", "[SPACE]", "[START]"] + [f"[{lang}]" for lang in XTTS_LANGS]))
    tok.save(str(out / "vocab.json"))
    args = XttsArgs(
        gpt_layers=2, gpt_n_model_channels=32, gpt_n_heads=2, gpt_num_audio_tokens=66,
        gpt_start_audio_token=64, gpt_stop_audio_token=65, gpt_max_audio_tokens=40,
        gpt_max_text_tokens=100, gpt_max_prompt_tokens=70, gpt_use_perceiver_resampler=True,
        gpt_use_masking_gt_prompt_approach=True, gpt_code_stride_len=1024, decoder_input_dim=32,
        d_vector_dim=512, input_sample_rate=22050, output_sample_rate=24000, output_hop_length=256,
        tokenizer_file="")
    config = XttsConfig(model_args=args, audio=XttsAudioConfig(sample_rate=22050, output_sample_rate=24000),
                        languages=XTTS_LANGS, temperature=0.75, top_k=10, top_p=0.85)
    torch.manual_seed(0)
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(vocab_file=str(out / "vocab.json"))
    model.init_models()
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, out / "model.pth")
    config.save_json(str(out / "config.json"))
    torch.save({name: {"gpt_cond_latent": torch.randn(1, 32, 32), "speaker_embedding": torch.randn(1, 512, 1)}
                for name in speakers}, out / "speakers_xtts.pth")
    return out


def build_all(root: Path) -> dict[str, Path]:
    return {"vits": build_vits(root / "vits", ["alloy", "echo", "fable"]),
            "vits_single": build_vits(root / "vits-single"),
            "xtts": build_xtts(root / "xtts")}


if __name__ == "__main__":
    import sys

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    paths = build_all(Path(sys.argv[1]))
    print(json.dumps({k: str(v) for k, v in paths.items()}))
