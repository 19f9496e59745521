import re

import jiwer


def normalize(text: str) -> str:
    text = text.lower().replace("riverbank", "river bank")
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' ]", " ", text)).strip()


def wer(references: list[str], hypotheses: list[str]) -> float:
    return jiwer.wer([normalize(r) for r in references], [normalize(h) for h in hypotheses])
