"""The ASR predictor's live session (``services.asr.live``) in process, with Whisper replaced at its
boundary by a scripted decoder and Silero by a loudness score (``tests.support.live``): turns, partial
text by local agreement, finals in commit order, and every bound."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from services.asr.live.agreement import LocalAgreement
from services.asr.live.buffer import AudioBuffer
from services.asr.live.session import LiveConfig, LiveError, LiveSession
from services.asr.live.turns import Started, Stopped, TurnDetector
from services.asr.vad import FRAME
from services.common import live_wire as wire
from services.common.live_wire import Vad
from tests.support.live import IN_RATE, ScriptedTranslator, ScriptedWhisper, loudness, tone_words


class Harness:
    def __init__(self, config: LiveConfig, translator: ScriptedTranslator | None = None, **limits: float) -> None:
        self.whisper = ScriptedWhisper()
        self.events: list[dict] = []
        self.session = LiveSession(
            config,
            self.whisper,
            loudness,
            self._emit,
            translator=translator,
            **limits,  # type: ignore[arg-type]
        )

    async def _emit(self, event: dict) -> None:
        self.events.append(event)

    async def feed(self, pcm: bytes, chunk_ms: int = 100) -> None:
        """The audio in appends of ``chunk_ms``, letting decodes run in between (a real-time client)."""
        step = IN_RATE * 2 * chunk_ms // 1000
        for i in range(0, len(pcm), step):
            await self.session.audio(pcm[i : i + step])
            await self.settle()

    async def settle(self) -> None:
        turn = self.session.turn
        if turn is not None and turn.partial is not None:
            await asyncio.wait([turn.partial])
        await asyncio.sleep(0)

    async def finals(self) -> None:
        if self.session._releasing is not None:
            await self.session._releasing

    def kinds(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]


def run(coroutine) -> None:
    asyncio.run(asyncio.wait_for(coroutine, timeout=30))


VAD = Vad(silence_duration_ms=300, prefix_padding_ms=100)


def test_partial_text_arrives_while_speaking_and_joins_to_the_transcript():
    async def scenario():
        h = Harness(LiveConfig(language="en", turn_detection=VAD, delay="minimal"))
        await h.feed(tone_words(8))
        await h.finals()
        return h

    h = asyncio.run(scenario())
    kinds = h.kinds()
    assert kinds[0] == wire.SPEECH_STARTED and kinds.count(wire.COMPLETED) == 1
    stopped = kinds.index(wire.SPEECH_STOPPED)
    assert kinds[:stopped].count(wire.DELTA) >= 2  # text while the speaker is still talking
    deltas = "".join(e["delta"] for e in h.of(wire.DELTA))
    (completed,) = h.of(wire.COMPLETED)
    assert deltas == completed["transcript"] == "Alpha bravo charlie delta echo foxtrot golf hotel."
    assert "uh" not in deltas  # a guess at a cut-off word is never sent: the next decode disagrees
    assert deltas.count(".") == 1  # a partial's full stop stays out (its last word is never sent)
    assert completed["seconds"] == pytest.approx(0.1 + 8 * 0.3 - 0.1, abs=0.05)  # prefix padding .. last burst
    assert [final for final, _ in h.whisper.calls].count(True) == 1


def test_without_a_language_partial_decodes_wait_for_enough_audio_to_detect_it():
    async def scenario():
        h = Harness(LiveConfig(turn_detection=VAD, delay="minimal"))
        await h.feed(tone_words(14))
        await h.finals()
        return h

    h = asyncio.run(scenario())
    partials = [seconds for final, seconds in h.whisper.calls if not final]
    assert partials and min(partials) >= 3.0  # detected on less, a language is a guess


def test_with_the_highest_delay_only_the_final_is_decoded():
    async def scenario():
        h = Harness(LiveConfig(turn_detection=VAD, delay="xhigh"))
        await h.feed(tone_words(4))
        await h.finals()
        return h

    h = asyncio.run(scenario())
    assert [e["delta"] for e in h.of(wire.DELTA)] == ["Alpha bravo charlie delta."]
    assert h.whisper.calls == [(True, pytest.approx(0.1 + 4 * 0.3 - 0.1, abs=0.05))]


def test_more_delay_means_fewer_decodes():
    counts = {}
    for delay in ("minimal", "low", "high"):

        async def scenario(delay=delay):
            h = Harness(LiveConfig(language="en", turn_detection=VAD, delay=delay))
            await h.feed(tone_words(14))
            await h.finals()
            return h

        counts[delay] = len(asyncio.run(scenario()).whisper.calls)
    assert counts["minimal"] > counts["low"] > counts["high"] >= 2


def test_a_fast_client_gets_no_queue_of_partial_decodes():
    async def scenario():
        h = Harness(LiveConfig(turn_detection=None, delay="minimal"))
        gate = threading.Event()
        h.whisper.hold = lambda final, seconds: final or gate.wait(5)
        pcm = tone_words(14, tail=0)
        step = IN_RATE * 2 // 10
        for i in range(0, len(pcm), step):  # all appends while the first partial decode is held
            await h.session.audio(pcm[i : i + step])
        gate.set()
        await h.settle()
        await h.session.commit()
        await h.finals()
        return h

    h = asyncio.run(scenario())
    assert [final for final, _ in h.whisper.calls] == [False, True]


def test_client_commits_without_server_vad():
    async def scenario():
        h = Harness(LiveConfig(turn_detection=None, delay="minimal"))
        await h.feed(tone_words(3, lead=0.2, tail=0.3))
        await h.session.commit()
        await h.feed(tone_words(2, lead=0.2, tail=0.3))
        await h.session.commit()
        with pytest.raises(LiveError) as empty:
            await h.session.commit()
        await h.finals()
        return h, empty.value

    h, empty = asyncio.run(scenario())
    assert wire.SPEECH_STARTED not in h.kinds()
    assert [e["transcript"] for e in h.of(wire.COMPLETED)] == ["Alpha bravo charlie.", "Alpha bravo."]
    assert [e["item_id"] for e in h.of(wire.COMMITTED)] == [e["item_id"] for e in h.of(wire.COMPLETED)]
    assert empty.code == "input_audio_buffer_commit_empty" and "0.00ms" in empty.message


def test_finals_leave_in_commit_order_even_when_a_later_one_is_ready_first():
    async def scenario():
        h = Harness(LiveConfig(turn_detection=None, delay="xhigh"))
        first_done, second_done = threading.Event(), threading.Event()

        def hold(final: bool, seconds: float) -> None:
            if seconds > 1.5:
                first_done.wait(5)  # the long item waits
            else:
                second_done.set()

        h.whisper.hold = hold
        await h.feed(tone_words(5, lead=0.2, tail=0.2))
        await h.session.commit()
        await h.feed(tone_words(1, lead=0.2, tail=0.2))
        await h.session.commit()
        await asyncio.to_thread(second_done.wait, 5)
        await asyncio.sleep(0.1)  # the short item's decode is done; its events must still wait
        held = h.of(wire.COMPLETED)
        first_done.set()
        await h.finals()
        return h, held

    h, held = asyncio.run(scenario())
    assert held == []
    committed = [e["item_id"] for e in h.of(wire.COMMITTED)]
    assert [e["item_id"] for e in h.of(wire.COMPLETED)] == committed
    assert [e["transcript"] for e in h.of(wire.COMPLETED)] == ["Alpha bravo charlie delta echo.", "Alpha."]


def test_items_beyond_the_limit_fail_at_once_and_the_session_goes_on():
    async def scenario():
        h = Harness(LiveConfig(turn_detection=None, delay="xhigh"), max_items=1)
        gate = threading.Event()
        h.whisper.hold = lambda final, seconds: gate.wait(5)
        for _ in range(2):
            await h.feed(tone_words(1, lead=0.2, tail=0.2))
            await h.session.commit()
        gate.set()
        await h.finals()
        await h.feed(tone_words(2, lead=0.2, tail=0.2))
        await h.session.commit()
        await h.finals()
        return h

    h = asyncio.run(scenario())
    assert [e["type"] for e in h.events if e["type"] in (wire.COMPLETED, wire.FAILED)] == [
        wire.COMPLETED,
        wire.FAILED,
        wire.COMPLETED,
    ]
    assert h.of(wire.FAILED)[0]["code"] == "too_many_items"


def test_the_buffer_is_bounded_without_vad_and_a_long_turn_is_cut_with_it():
    async def without_vad():
        h = Harness(LiveConfig(turn_detection=None, delay="xhigh"), max_buffer_seconds=2)
        await h.feed(tone_words(4, lead=0, tail=0.5))  # 1.7 s
        with pytest.raises(LiveError) as full:
            await h.feed(tone_words(2, lead=0, tail=0))
        return full.value

    assert asyncio.run(without_vad()).code == "input_audio_buffer_full"

    async def with_vad():
        h = Harness(LiveConfig(turn_detection=Vad(silence_duration_ms=500), delay="xhigh"), max_buffer_seconds=2)
        await h.feed(tone_words(12, lead=0.2))  # 3.6 s of speech without a 500 ms pause
        await h.finals()
        return h

    h = asyncio.run(with_vad())
    cut, rest = h.of(wire.COMPLETED)
    assert cut["seconds"] == pytest.approx(2, abs=0.11)  # cut in the pause before the buffer's limit
    assert cut["seconds"] + rest["seconds"] == pytest.approx(3.7, abs=0.05)  # the next turn starts after it
    assert (cut["transcript"], rest["transcript"]) == ("Alpha bravo charlie delta echo foxtrot.",) * 2
    assert h.kinds().count(wire.SPEECH_STARTED) == h.kinds().count(wire.SPEECH_STOPPED) == 2


def test_a_turn_longer_than_whispers_window_becomes_two_items():
    async def scenario():
        h = Harness(LiveConfig(turn_detection=Vad(silence_duration_ms=500), delay="xhigh"))
        await h.feed(tone_words(110, lead=0.2), chunk_ms=500)  # 33 s without a pause
        await h.finals()
        return h

    h = asyncio.run(scenario())
    seconds = [e["seconds"] for e in h.of(wire.COMPLETED)]
    assert len(seconds) == 2 and seconds[0] == pytest.approx(30, abs=0.1)
    assert [e["type"] for e in h.events].count(wire.SPEECH_STARTED) == 2


def test_clear_drops_the_open_turn():
    async def scenario():
        h = Harness(LiveConfig(turn_detection=VAD, delay="minimal"))
        await h.feed(tone_words(3, tail=0))
        await h.session.clear()
        await h.feed(bytes(IN_RATE))  # silence: the dropped turn never ends
        await h.finals()
        return h

    h = asyncio.run(scenario())
    assert h.kinds()[-1] == wire.CLEARED and wire.COMMITTED not in h.kinds()
    assert h.session.buffer.held < wire.RATE


def test_idle_timeout_commits_what_was_heard():
    async def scenario():
        h = Harness(LiveConfig(turn_detection=Vad(idle_timeout_ms=1000), delay="xhigh"))
        await h.feed(bytes(IN_RATE * 2 * 3 // 2))  # 1.5 s of silence
        await h.finals()
        return h

    h = asyncio.run(scenario())
    (timeout,) = h.of(wire.TIMEOUT)
    assert (timeout["audio_start_ms"], timeout["audio_end_ms"]) == (0, pytest.approx(1000, abs=40))
    assert h.of(wire.COMPLETED)[0]["transcript"] == ""


def test_closing_without_finishing_cancels_the_decodes():
    cancelled: list[bool] = []

    async def scenario():
        h = Harness(LiveConfig(turn_detection=None, delay="xhigh"))
        started = threading.Event()

        def hold(final: bool, seconds: float) -> None:
            started.set()
            release.wait(5)

        release = threading.Event()
        h.whisper.hold = hold
        await h.feed(tone_words(2, lead=0.2, tail=0.2))
        await h.session.commit()
        await asyncio.to_thread(started.wait, 5)
        await h.session.close(finish=False)
        release.set()
        await asyncio.sleep(0.05)
        cancelled.append(h.session.items[0].task.cancelled())
        return h

    h = asyncio.run(scenario())
    assert cancelled == [True] and wire.COMPLETED not in h.kinds()


def test_bad_audio_and_configuration_are_refused():
    async def scenario():
        h = Harness(LiveConfig(turn_detection=None))
        with pytest.raises(LiveError) as odd:
            await h.session.audio(b"\x00\x01\x02")
        return odd.value

    assert asyncio.run(scenario()).param == "audio"
    for message in ({"format": "audio/opus"}, {"delay": "instant"}, {"turn_detection": {"threshold": "x", "bad": 1}}):
        with pytest.raises(LiveError):
            LiveConfig.from_wire(message)


# -- the pieces ------------------------------------------------------------------------------------
def test_local_agreement_sends_only_what_two_decodes_agree_on():
    agreement = LocalAgreement()
    assert agreement.update("the quick") == []
    assert agreement.update("the quick brown") == ["the", "quick"]
    assert agreement.update("the quick brawn fox") == []
    assert agreement.update("The quick, brown fox jumps") == []  # 'brown' was 'brawn' the time before
    assert agreement.update("the quick brown fox jumps over") == ["brown", "fox", "jumps"]
    assert agreement.finish("The quick brown fox jumps over the lazy dog.") == ["over", "the", "lazy", "dog."]
    fresh = LocalAgreement()
    assert fresh.finish("Nothing was sent.") == ["Nothing", "was", "sent."]


def test_the_final_decode_continues_after_the_sent_words_even_when_it_differs_before_them():
    agreement = LocalAgreement()
    agreement.update("I saw the cat sit")
    agreement.update("I saw the cat sit down")
    assert agreement.sent == ["I", "saw", "the", "cat", "sit"]
    assert agreement.finish("I saw a cat sit down.") == ["down."]


def test_the_audio_buffer_addresses_samples_from_the_session_start():
    buffer = AudioBuffer()
    for i in range(5):
        buffer.append(np.full(100, i, np.float32))
    buffer.drop_before(250)
    assert (buffer.start, buffer.end, buffer.held) == (200, 500, 300)
    assert buffer.span(150, 310).tolist() == [2.0] * 100 + [3.0] * 10  # clipped to what is held
    assert buffer.span(490, 900).size == 10


def test_turns_start_with_prefix_padding_and_stop_after_the_silence():
    detector = TurnDetector(Vad(threshold=0.5, prefix_padding_ms=64, silence_duration_ms=96))
    probabilities = [0.1] * 10 + [0.9] * 5 + [0.4] * 2 + [0.9] + [0.1] * 3 + [0.1] * 4
    events = detector.feed(0, probabilities)
    assert events == [Started(10 * FRAME - 1024), Stopped(18 * FRAME, 10 * FRAME - 1024)]  # 0.4: hysteresis
    assert not detector.in_speech


def test_one_batch_of_frames_can_end_a_turn_and_start_the_next():
    detector = TurnDetector(Vad(threshold=0.5, prefix_padding_ms=64, silence_duration_ms=96))
    events = detector.feed(0, [0.9] * 5 + [0.1] * 6 + [0.9] * 4)
    assert events == [Started(0), Stopped(5 * FRAME, 0), Started(11 * FRAME - 1024)]
    assert detector.in_speech and detector.start == 11 * FRAME - 1024


def test_translation_sessions_translate_each_item_by_whisper_into_english_and_by_text_otherwise():
    async def scenario(target: str, heard: str, translator: ScriptedTranslator | None) -> Harness:
        h = Harness(LiveConfig(turn_detection=VAD, delay="xhigh"), translator)
        await h.session.configure(LiveConfig(turn_detection=VAD, delay="xhigh", translate_to=target))
        h.whisper.heard = heard
        await h.feed(tone_words(3))
        await h.finals()
        return h

    english = asyncio.run(scenario("en", "de", None))
    (item,) = english.of(wire.COMPLETED)
    assert (item["transcript"], item["language"]) == ("Alpha bravo charlie.", "de")
    assert item["translation"] == {"text": "ALPHA BRAVO CHARLIE.", "language": "en"}
    assert english.whisper.tasks == ["transcribe", "translate"]  # one final, then its translation
    assert set(item["timings"]) == {"transcribe", "translate"}

    async def untranscribed() -> Harness:  # nobody reads the German: the translate decode alone
        h = Harness(LiveConfig(turn_detection=VAD, delay="xhigh"))
        await h.session.configure(LiveConfig(turn_detection=VAD, delay="xhigh", translate_to="en", transcript=False))
        h.whisper.heard = "de"
        await h.feed(tone_words(3))
        await h.finals()
        return h

    alone = asyncio.run(untranscribed())
    assert alone.whisper.tasks == ["translate"]
    (item,) = alone.of(wire.COMPLETED)
    assert item["translation"]["text"] == "ALPHA BRAVO CHARLIE." and set(item["timings"]) == {"translate"}
    assert not alone.of(wire.DELTA)

    same = asyncio.run(scenario("en", "en", None))  # English already: no second decode
    assert same.of(wire.COMPLETED)[0]["translation"]["text"] == "Alpha bravo charlie."
    assert same.whisper.tasks == ["transcribe"]

    translator = ScriptedTranslator()
    french = asyncio.run(scenario("fr", "de", translator))
    assert french.of(wire.COMPLETED)[0]["translation"] == {"text": "ahplA ovarb .eilrahc", "language": "fr"}
    assert translator.calls == [("Alpha bravo charlie.", "de", "fr")]

    unknown = asyncio.run(scenario("fr", "ja", ScriptedTranslator()))  # a source the model lacks
    (item,) = unknown.of(wire.COMPLETED)
    assert item["transcript"] == "Alpha bravo charlie." and "translation" not in item
    assert item["translation_error"]["code"] == "unsupported_language"


def test_a_target_language_is_checked_when_configured():
    async def scenario(translator: ScriptedTranslator | None, target: str) -> str:
        h = Harness(LiveConfig(), translator)
        with pytest.raises(LiveError) as refused:
            await h.session.configure(LiveConfig(translate_to=target))
        assert refused.value.param == "session.audio.output.language"
        return refused.value.code

    assert asyncio.run(scenario(None, "fr")) == "unsupported_language"  # no text translation model
    assert asyncio.run(scenario(ScriptedTranslator(), "sv")) == "unsupported_language"
    with pytest.raises(LiveError):
        LiveConfig.from_wire({"translate_to": "French!"})
