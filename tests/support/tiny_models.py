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
    "hola mundo esto es una prueba",
    "bonjour le monde ceci est un test",
    "hallo welt das ist ein test",
]
XTTS_LANGS = ["en", "es", "fr", "de"]


def build_vits(out: Path, speakers: list[str] | None = None) -> Path:
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    args = VitsArgs(
        hidden_channels=16,
        hidden_channels_ffn_text_encoder=32,
        num_heads_text_encoder=2,
        num_layers_text_encoder=1,
        num_layers_posterior_encoder=1,
        num_layers_flow=1,
        kernel_size_flow=3,
        kernel_size_posterior_encoder=3,
        use_sdp=False,
        resblock_type_decoder="2",
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3]],
        upsample_rates_decoder=[8, 8, 4],
        upsample_kernel_sizes_decoder=[16, 16, 8],
        upsample_initial_channel_decoder=32,
        periods_multi_period_discriminator=[2],
        init_discriminator=False,
        use_speaker_embedding=bool(speakers),
        speaker_embedding_channels=16,
    )
    config = VitsConfig(
        model_args=args,
        audio=BaseAudioConfig(sample_rate=22050, fft_size=1024, hop_length=256, win_length=1024, num_mels=80),
        use_phonemes=False,
        text_cleaner="english_cleaners",
        characters=CharactersConfig(
            characters_class="TTS.tts.models.vits.VitsCharacters",
            pad="<PAD>",
            eos="<EOS>",
            bos="<BOS>",
            blank="<BLNK>",
            characters="abcdefghijklmnopqrstuvwxyz",
            punctuations=" !'(),-.:;?",
            phonemes="",
        ),
        add_blank=True,
        speakers=list(speakers or []),
        test_sentences=[],
    )
    torch.manual_seed(0)
    model = Vits(config)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, out / "model.pth")
    config.save_json(str(out / "config.json"))
    return out


def build_xtts(out: Path, speakers: tuple[str, ...] = ("Ana Random", "Bo Random"), legacy: bool = False) -> Path:
    """XTTS v2 layout with a tiny GPT (the HiFiGAN decoder and speaker encoder keep their fixed size).
    ``legacy`` pickles the config object into model.pth, as the released XTTS v2 checkpoint does."""
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
    tok.train_from_iterator(
        CORPUS,
        BpeTrainer(
            vocab_size=160,
            show_progress=False,
            special_tokens=["[STOP]", "[UNK]", "[SPACE]", "[START]"] + [f"[{lang}]" for lang in XTTS_LANGS],
        ),
    )
    tok.save(str(out / "vocab.json"))
    args = XttsArgs(
        gpt_layers=2,
        gpt_n_model_channels=32,
        gpt_n_heads=2,
        gpt_num_audio_tokens=66,
        gpt_start_audio_token=64,
        gpt_stop_audio_token=65,
        gpt_max_audio_tokens=40,
        gpt_max_text_tokens=100,
        gpt_max_prompt_tokens=70,
        gpt_use_perceiver_resampler=True,
        gpt_use_masking_gt_prompt_approach=True,
        gpt_code_stride_len=1024,
        decoder_input_dim=32,
        d_vector_dim=512,
        input_sample_rate=22050,
        output_sample_rate=24000,
        output_hop_length=256,
        tokenizer_file="",
    )
    config = XttsConfig(
        model_args=args,
        audio=XttsAudioConfig(sample_rate=22050, output_sample_rate=24000),
        languages=XTTS_LANGS,
        temperature=0.75,
        top_k=10,
        top_p=0.85,
    )
    torch.manual_seed(0)
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(vocab_file=str(out / "vocab.json"))
    model.init_models()
    torch.save({"model": model.state_dict(), "config": config if legacy else config.to_dict()}, out / "model.pth")
    config.save_json(str(out / "config.json"))
    torch.save(
        {
            name: {"gpt_cond_latent": torch.randn(1, 32, 32), "speaker_embedding": torch.randn(1, 512, 1)}
            for name in speakers
        },
        out / "speakers_xtts.pth",
    )
    return out


def build_wav2vec2(out: Path) -> Path:
    """A random character-level Wav2Vec2ForCTC saved with save_pretrained (alignment stand-in)."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    out.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for char in "abcdefghijklmnopqrstuvwxyz'":
        vocab[char] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(out / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    )
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    )
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out)
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        pad_token_id=0,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="group",
    )
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(out)
    return out


def build_m2m100(out: Path) -> Path:
    """A tiny M2M100 (text translation) with a SentencePiece vocabulary trained on the corpus, saved as
    the hub's checkpoints are (tokenizer files and weights)."""
    import io

    import sentencepiece as spm
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    out.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 4),
        model_writer=model,
        vocab_size=80,
        model_type="bpe",
        character_coverage=1.0,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        pad_id=-1,
        minloglevel=2,
    )
    (out / "sentencepiece.bpe.model").write_bytes(model.getvalue())
    pieces = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for i in range(pieces.get_piece_size()):
        vocab.setdefault(pieces.id_to_piece(i), len(vocab))
    (out / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = M2M100Tokenizer(str(out / "vocab.json"), str(out / "sentencepiece.bpe.model"))
    tokenizer.save_pretrained(out)
    config = M2M100Config(
        vocab_size=max(tokenizer.lang_code_to_id.values()) + 9,  # the language tokens, 8 made-up words
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=128,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    torch.manual_seed(0)
    M2M100ForConditionalGeneration(config).save_pretrained(out)
    return out


def _save_pyannote(model, path: Path) -> None:
    import lightning
    import torch

    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def build_diarization(out: Path) -> Path:
    """A pyannote SpeakerDiarization pipeline: the real segmentation model WhisperX ships (so speech
    regions are found), a random x-vector embedding and a random PLDA (so labels are arbitrary)."""
    import shutil

    import numpy as np
    import torch
    import whisperx
    import yaml
    from pyannote.audio import __version__ as pyannote_version
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import XVectorMFCC

    (out / "segmentation").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(
        Path(whisperx.__file__).parent / "assets" / "pytorch_model.bin", out / "segmentation" / "pytorch_model.bin"
    )
    torch.manual_seed(0)
    embedding = XVectorMFCC(dimension=32)
    embedding.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0, min_duration=0.5
    )
    embedding.setup()
    _save_pyannote(embedding, out / "embedding" / "pytorch_model.bin")
    rng, dim, lda = np.random.default_rng(0), 32, 8
    (out / "plda").mkdir(exist_ok=True)
    np.savez(
        out / "plda" / "xvec_transform.npz",
        mean1=np.zeros(dim),
        mean2=np.zeros(lda),
        lda=rng.standard_normal((dim, lda)),
    )
    np.savez(
        out / "plda" / "plda.npz",
        mu=np.zeros(lda),
        tr=np.linalg.qr(rng.standard_normal((lda, lda)))[0],
        psi=np.linspace(5, 0.5, lda),
    )
    config = {
        "dependencies": {"pyannote.audio": pyannote_version},
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {
                "segmentation": "$model/segmentation",
                "embedding": "$model/embedding",
                "plda": "$model/plda",
                "clustering": "VBxClustering",
                "embedding_exclude_overlap": True,
                "segmentation_batch_size": 8,
                "embedding_batch_size": 8,
            },
        },
        "params": {
            "segmentation": {"threshold": 0.5, "min_duration_off": 0.0},
            "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8},
        },
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def build_all(root: Path) -> dict[str, Path]:
    return {
        "vits": build_vits(root / "vits", ["alloy", "echo", "fable"]),
        "vits_single": build_vits(root / "vits-single"),
        "xtts": build_xtts(root / "xtts"),
        "wav2vec2": build_wav2vec2(root / "wav2vec2"),
        "m2m100": build_m2m100(root / "m2m100"),
        "diarization": build_diarization(root / "diarization"),
    }


if __name__ == "__main__":
    import sys

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    paths = build_all(Path(sys.argv[1]))
