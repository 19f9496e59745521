"""The playground in a real browser: Debian's Chromium, headless, driven by Playwright (no browser
download), on loopback against the real stack. Its fake microphone plays an espeak-ng recording: the
page records it and the transcript that appears matches the sentence; the upload path shows the
timeline; speech plays to its end; live captions arrive over the realtime socket; errors show the
API's message. A screenshot of each state is saved in the test's temp dir; no console errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import SENTENCES
from tests.support.espeak import speak
from tests.support.text import wer

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
# one long turn (about 7 s): live captions need a few seconds of speech before two partial decodes of
# Whisper base agree on this 2-core machine (a decode takes about a second there)
SPOKEN = (
    "She bought three apples and a loaf of bread at the market, and the weather today is sunny with a "
    "gentle breeze from the west."
)


@pytest.fixture(scope="module")
def microphone(workdir) -> Path:
    """The sentence at 48 kHz, played once by the fake microphone: a second of silence first (the
    recorder starts a moment after the capture does: with 0.3 s the first word was sometimes cut)
    and 1.5 s after it."""
    out = workdir / "microphone.wav"
    recording = speak(SPOKEN, workdir / "microphone-16k.wav")
    subprocess.run(["sox", "-D", str(recording), "-r", "48000", str(out), "pad", "1.0", "1.5"], check=True)
    return out


@pytest.fixture(scope="module")
def browser(microphone):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={microphone}%noloop"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, gateway_url, tmp_path):
    context = browser.new_context(bypass_csp=True)  # the page forbids eval, which Playwright's waits use
    page = context.new_page()
    page.problems = []  # console errors and uncaught exceptions
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.goto(f"{gateway_url}/playground")
    page.wait_for_function("document.getElementById('stt-model').options.length > 0", timeout=60_000)
    page.shots = tmp_path
    yield page
    context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)


def test_the_page_is_served_with_a_strict_policy(gateway_url):
    r = httpx.get(f"{gateway_url}/playground")
    assert r.status_code == 200 and "script-src 'self'" in r.headers["content-security-policy"]
    assert httpx.get(f"{gateway_url}/playground/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{gateway_url}/playground/../settings.py").status_code == 404
    assert httpx.get(f"{gateway_url}/playground/nope.js").status_code == 404


def test_record_from_the_microphone_and_transcribe(page):
    page.click("#record")
    page.wait_for_timeout(10_500)  # the 9.5 s recording and some silence
    page.click("#record")
    page.wait_for_selector("#recorded:not([hidden])")
    page.click("#transcribe-go")
    page.wait_for_function("document.getElementById('stt-time').textContent.includes('done')", timeout=120_000)
    shot(page, "recorded-transcript")
    text = page.text_content("#stt-text")
    assert wer([SPOKEN], [text]) <= 0.3, text
    assert "first text after" in page.text_content("#stt-time")
    assert page.problems == []


def test_upload_shows_words_on_a_timeline(page, spoken):
    sentence = SENTENCES[1]
    page.set_input_files("#file", str(spoken[sentence]))
    page.check("#stt-words")
    page.click("#transcribe-go")
    page.wait_for_selector("#timeline .words span", timeout=120_000)
    shot(page, "upload-timeline")
    assert wer([sentence], [page.text_content("#stt-text")]) <= 0.3
    words = page.locator("#timeline .words span").count()
    assert abs(words - len(sentence.split())) <= 2 and page.locator("#timeline .seg").count() >= 1
    assert page.problems == []


def test_speech_plays_to_the_end(page):
    voices = page.eval_on_selector_all("#tts-voice option", "o => o.map(x => x.value)")
    assert "alloy" in voices
    page.fill("#tts-text", "Hello from the playground. It speaks.")
    page.select_option("#tts-voice", voices[0])
    page.click("#speak-go")
    page.wait_for_function("document.getElementById('player').ended", timeout=120_000)
    shot(page, "speech-played")
    assert page.eval_on_selector("#player", "p => p.duration") > 0.5
    assert "first audio after" in page.text_content("#tts-time")
    assert page.get_attribute("#download", "download") == "speech.mp3"
    page.select_option("#tts-format", "wav")
    page.click("#speak-go")
    page.wait_for_function(
        "document.getElementById('player').ended && document.getElementById('download').download === 'speech.wav'",
        timeout=120_000,
    )
    assert page.problems == []


def test_live_captions_from_the_microphone(page):
    page.evaluate(  # every text the grey (partial) caption shows before the final one replaces it
        """() => { window.partials = [];
        new MutationObserver(() => document.querySelectorAll('#captions p.partial').forEach((p) => {
            if (p.textContent && p.textContent !== '...') window.partials.push(p.textContent); }))
        .observe(document.getElementById('captions'), { subtree: true, childList: true, characterData: true }); }"""
    )
    page.select_option("#live-delay", "minimal")
    page.fill("#stt-language", "en")  # partial text from the first second (without it: from 3 s)
    page.click("#live-go")
    page.wait_for_selector("#captions p.final", timeout=120_000)
    shot(page, "live-captions")
    text = page.text_content("#captions p.final")
    partials = page.evaluate("window.partials")
    page.click("#live-go")
    assert wer([SPOKEN], [text]) <= 0.35, text
    early = [p for p in partials if len(p) < len(text)]  # text shown before the turn's final decode
    assert early and all(text.startswith(p) for p in early), (partials, text)
    assert page.text_content("#live-error") == "" and page.problems == []


def test_errors_show_the_apis_message(page, workdir):
    bad = workdir / "not-audio.txt"
    bad.write_text("this is not a recording\n" * 20)
    page.set_input_files("#file", str(bad))
    page.click("#transcribe-go")
    page.wait_for_function("document.getElementById('stt-error').textContent.length > 0", timeout=60_000)
    assert "could not decode the audio file" in page.text_content("#stt-error")
    page.fill("#tts-text", "")
    page.click("#speak-go")
    page.wait_for_function("document.getElementById('tts-error').textContent.length > 0", timeout=60_000)
    shot(page, "errors")
    assert "input" in page.text_content("#tts-error")
    # the browser logs each refused request; nothing else may go wrong
    assert [p for p in page.problems if "Failed to load resource" not in p] == []
