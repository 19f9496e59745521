// The playground calls the public API exactly as a client would: same routes, same auth (the key
// lives in this browser tab's sessionStorage), errors shown as the API's own message.
"use strict";

const $ = (id) => document.getElementById(id);
const COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"];
const state = { audio: null, audioName: "recording.webm", recorder: null, live: null };

function apiKey() { return sessionStorage.getItem("apiKey") || ""; }
function auth(headers = {}) { const key = apiKey(); return key ? { ...headers, Authorization: `Bearer ${key}` } : headers; }
function now() { return performance.now(); }
function ms(t) { return `${Math.round(t)} ms`; }

async function apiError(response) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || `${response.status} ${response.statusText}`;
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

async function call(path, options = {}) {
  const response = await fetch(path, { ...options, headers: auth(options.headers || {}) });
  if (!response.ok) throw new Error(await apiError(response));
  return response;
}

function fail(where, error) { $(where).textContent = error instanceof Error ? error.message : String(error); }
function clear(...ids) { for (const id of ids) $(id).textContent = ""; }

function fill(select, items) {
  select.replaceChildren(...items.map(([value, label]) => new Option(label, value)));
}

async function loadLists() {
  try {
    const [models, speech, voices] = await Promise.all([
      call("/v1/models").then((r) => r.json()),
      call("/v1/audio/models").then((r) => r.json()),
      call("/v1/audio/voices").then((r) => r.json()),
    ]);
    const speechIds = new Set(speech.models.map((m) => m.id));
    fill($("stt-model"), models.data.filter((m) => !speechIds.has(m.id)).map((m) => [m.id, m.id]));
    fill($("tts-model"), speech.models.map((m) => [m.id, m.id]));
    fill($("tts-voice"), voices.voices.map((v) => [v.id, v.type === "alias" && v.maps_to ? `${v.name} (${v.maps_to})` : v.name]));
    $("status").textContent = `${models.data.length} models, ${voices.voices.length} voices`;
  } catch (error) {
    $("status").textContent = `could not list models or voices: ${error.message}`;
  }
}

// -- transcription -----------------------------------------------------------------------------------
async function toggleRecording() {
  const button = $("record");
  if (state.recorder) { state.recorder.stop(); return; }
  clear("stt-error");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia(
      { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (error) { fail("stt-error", `microphone: ${error.message}`); return; }
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    state.audio = new Blob(chunks, { type: recorder.mimeType });
    state.audioName = "recording.webm";
    $("recorded").src = URL.createObjectURL(state.audio);
    $("recorded").hidden = false;
    $("record-state").textContent = `recorded ${(state.audio.size / 1024).toFixed(0)} KiB`;
    state.recorder = null;
    button.textContent = "Record"; button.classList.remove("on");
  };
  recorder.start(250);
  state.recorder = recorder;
  button.textContent = "Stop"; button.classList.add("on");
  $("record-state").textContent = "recording...";
}

function transcriptionForm(overrides = {}) {
  const form = new FormData();
  form.append("file", state.audio, state.audioName);
  form.append("model", $("stt-model").value);
  if ($("stt-language").value.trim()) form.append("language", $("stt-language").value.trim());
  const fields = { response_format: $("stt-format").value, ...overrides };
  for (const [k, v] of Object.entries(fields)) {
    if (Array.isArray(v)) v.forEach((x) => form.append(`${k}[]`, x)); else form.append(k, String(v));
  }
  if ($("stt-diarize").checked) form.append("diarize", "true");
  return form;
}

async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    rest += value;
    const frames = rest.split("\n\n");
    rest = frames.pop();
    for (const frame of frames) {
      const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
      if (data) yield JSON.parse(data);
    }
  }
}

async function transcribe() {
  clear("stt-error", "stt-text", "stt-time"); $("timeline").replaceChildren();
  if (!state.audio) { fail("stt-error", "Record something or choose a file first."); return; }
  const started = now();
  const wantsTimeline = $("stt-words").checked || $("stt-diarize").checked;
  const streamable = ["json", "text"].includes($("stt-format").value);
  try {
    if ($("stt-stream").checked && streamable) {
      const response = await call("/v1/audio/transcriptions", { method: "POST", body: transcriptionForm({ stream: true }) });
      let first = null;
      for await (const event of sseEvents(response)) {
        if (event.type === "transcript.text.delta") {
          if (first === null) first = now() - started;
          $("stt-text").textContent += event.delta;
        } else if (event.type === "transcript.text.done") {
          $("stt-text").textContent = event.text;
        } else if (event.type === "error") {
          throw new Error(event.error ? event.error.message : "the transcription failed");
        }
      }
      $("stt-time").textContent = `first text after ${ms(first ?? now() - started)}, done after ${ms(now() - started)}`;
      if (wantsTimeline) {  // the stream carries text only: the timeline is a second, verbose_json request
        const detail = await call("/v1/audio/transcriptions", { method: "POST", body: transcriptionForm(timelineFields()) });
        renderTimeline(await detail.json());
      }
      return;
    }
    const fields = wantsTimeline && streamable ? timelineFields() : {};
    const response = await call("/v1/audio/transcriptions", { method: "POST", body: transcriptionForm(fields) });
    const type = response.headers.get("content-type") || "";
    if (type.includes("application/json")) {
      const body = await response.json();
      $("stt-text").textContent = body.text;
      if (body.segments) renderTimeline(body);
    } else {
      $("stt-text").textContent = await response.text();
    }
    $("stt-time").textContent = `done after ${ms(now() - started)}`;
  } catch (error) { fail("stt-error", error); }
}

function timelineFields() {
  return { response_format: "verbose_json", timestamp_granularities: ["segment", ...($("stt-words").checked ? ["word"] : [])] };
}

function renderTimeline(result) {
  const duration = result.duration || Math.max(0, ...(result.segments || []).map((s) => s.end)) || 1;
  const speakers = [...new Set((result.segments || []).map((s) => s.speaker).filter(Boolean))];
  const colour = (speaker) => COLOURS[Math.max(0, speakers.indexOf(speaker)) % COLOURS.length];
  const bar = document.createElement("div");
  bar.className = "bar";
  for (const s of result.segments || []) {
    const block = document.createElement("div");
    block.className = "seg";
    block.style.left = `${(100 * s.start) / duration}%`;
    block.style.width = `${(100 * (s.end - s.start)) / duration}%`;
    block.style.background = colour(s.speaker);
    block.title = `${s.start.toFixed(2)}-${s.end.toFixed(2)} s${s.speaker ? ` ${s.speaker}` : ""}: ${s.text}`;
    bar.append(block);
  }
  const list = document.createElement("div");
  list.className = "words";
  const words = result.words || (result.segments || []).flatMap((s) => (s.words || []).map((w) => ({ ...w, speaker: w.speaker || s.speaker })));
  for (const w of words) {
    const span = document.createElement("span");
    span.textContent = w.word.trim();
    span.title = `${w.start.toFixed(2)}-${w.end.toFixed(2)} s`;
    span.style.background = `${colour(w.speaker)}33`;
    span.append(Object.assign(document.createElement("small"), { textContent: ` ${w.start.toFixed(1)}` }));
    list.append(span);
  }
  const legend = document.createElement("p");
  legend.className = "muted";
  legend.textContent = `${(result.segments || []).length} segments, ${words.length} words, ${duration.toFixed(1)} s` +
    (speakers.length ? `, speakers ${speakers.join(", ")}` : "");
  $("timeline").replaceChildren(legend, bar, list);
}

// -- live captions (realtime) -------------------------------------------------------------------------
function base64Of(int16) {
  let binary = "";
  const bytes = new Uint8Array(int16.buffer);
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function caption(itemId) {
  let line = document.querySelector(`#captions p[data-item="${itemId}"]`);
  if (!line) {
    line = Object.assign(document.createElement("p"), { className: "partial" });
    line.dataset.item = itemId;
    $("captions").append(line);
  }
  return line;
}

async function toggleLive() {
  if (state.live) { state.live.stop(); return; }
  clear("live-error");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia(
      { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (error) { fail("live-error", `microphone: ${error.message}`); return; }
  const protocols = ["realtime", ...(apiKey() ? [`openai-insecure-api-key.${apiKey()}`] : [])];
  const ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}/v1/realtime?intent=transcription`, protocols);
  const context = new AudioContext({ sampleRate: 24000 });
  const source = context.createMediaStreamSource(stream);
  const processor = context.createScriptProcessor(4096, 1, 1);
  const stop = () => {
    processor.disconnect(); source.disconnect(); context.close();
    stream.getTracks().forEach((t) => t.stop());
    if (ws.readyState <= WebSocket.OPEN) ws.close();
    state.live = null;
    $("live-go").textContent = "Start"; $("live-go").classList.remove("on");
    $("live-state").textContent = "stopped";
  };
  state.live = { stop };
  $("live-go").textContent = "Stop"; $("live-go").classList.add("on");
  processor.onaudioprocess = (e) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const input = e.inputBuffer.getChannelData(0);
    const pcm = new Int16Array(input.length);
    for (let i = 0; i < input.length; i++) pcm[i] = Math.max(-1, Math.min(1, input[i])) * 0x7fff;
    ws.send(JSON.stringify({ type: "input_audio_buffer.append", audio: base64Of(pcm) }));
  };
  ws.onopen = () => {
    const language = $("stt-language").value.trim() || null;
    ws.send(JSON.stringify({ type: "session.update", session: { type: "transcription", audio: { input: {
      format: { type: "audio/pcm", rate: 24000 },
      transcription: { model: $("stt-model").value || "whisper-1", language, delay: $("live-delay").value },
      turn_detection: { type: "server_vad", silence_duration_ms: 500 } } } } }));
    source.connect(processor); processor.connect(context.destination);
    $("live-state").textContent = "listening...";
  };
  ws.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "input_audio_buffer.speech_started") caption(event.item_id).textContent = "...";
    else if (event.type === "conversation.item.input_audio_transcription.delta") {
      const line = caption(event.item_id);
      line.textContent = (line.textContent === "..." ? "" : line.textContent) + event.delta;
    } else if (event.type === "conversation.item.input_audio_transcription.completed") {
      const line = caption(event.item_id);
      line.textContent = event.transcript; line.className = "final";
    } else if (event.type === "conversation.item.input_audio_transcription.failed" || event.type === "error") {
      fail("live-error", event.error.message);
    }
  };
  ws.onerror = () => fail("live-error", "the realtime connection failed (is an API key needed?)");
  ws.onclose = () => { if (state.live) stop(); };
}

// -- speech -----------------------------------------------------------------------------------------
function wavOfPcm(bytes, rate) {
  const header = new DataView(new ArrayBuffer(44));
  const text = (offset, s) => [...s].forEach((c, i) => header.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF"); header.setUint32(4, 36 + bytes.byteLength, true); text(8, "WAVEfmt ");
  header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
  header.setUint32(24, rate, true); header.setUint32(28, rate * 2, true); header.setUint16(32, 2, true);
  header.setUint16(34, 16, true); text(36, "data"); header.setUint32(40, bytes.byteLength, true);
  return new Blob([header.buffer, bytes], { type: "audio/wav" });
}

async function speak() {
  clear("tts-error", "tts-time");
  $("download").hidden = true;
  const format = $("tts-format").value;
  const player = $("player");
  const body = { model: $("tts-model").value, voice: $("tts-voice").value, input: $("tts-text").value,
                 response_format: format, speed: Number($("tts-speed").value) };
  const started = now();
  try {
    const streamed = format === "mp3" && window.MediaSource && MediaSource.isTypeSupported("audio/mpeg");
    const response = await call("/v1/audio/speech", { method: "POST", headers: { "Content-Type": "application/json" },
                                                      body: JSON.stringify({ ...body, stream: streamed }) });
    const parts = [];
    let first = null;
    if (streamed) {  // play while it arrives
      const media = new MediaSource();
      player.src = URL.createObjectURL(media);
      await new Promise((resolve) => media.addEventListener("sourceopen", resolve, { once: true }));
      const buffer = media.addSourceBuffer("audio/mpeg");
      const reader = response.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (first === null) { first = now() - started; player.play().catch(() => {}); }
        parts.push(value);
        if (buffer.updating) await new Promise((r) => buffer.addEventListener("updateend", r, { once: true }));
        buffer.appendBuffer(value);
      }
      if (buffer.updating) await new Promise((r) => buffer.addEventListener("updateend", r, { once: true }));
      media.endOfStream();
    } else {
      const reader = response.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (first === null) first = now() - started;
        parts.push(value);
      }
      const rate = Number(response.headers.get("x-sample-rate")) || 24000;
      const blob = format === "pcm" ? wavOfPcm(new Blob(parts), rate) : new Blob(parts, { type: response.headers.get("content-type") });
      player.src = URL.createObjectURL(blob);
      await player.play().catch(() => {});
    }
    $("tts-time").textContent = `first audio after ${ms(first ?? now() - started)}, all of it after ${ms(now() - started)}`;
    const link = $("download");
    link.href = URL.createObjectURL(new Blob(parts, { type: response.headers.get("content-type") || "" }));
    link.download = `speech.${format}`;
    link.hidden = false;
  } catch (error) { fail("tts-error", error); }
}

// -- wiring -----------------------------------------------------------------------------------------
$("api-key").value = apiKey();
$("api-key").addEventListener("change", (e) => { sessionStorage.setItem("apiKey", e.target.value.trim()); loadLists(); });
$("record").addEventListener("click", toggleRecording);
$("file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) { state.audio = file; state.audioName = file.name; $("record-state").textContent = file.name; }
});
$("transcribe-go").addEventListener("click", transcribe);
$("live-go").addEventListener("click", toggleLive);
$("speak-go").addEventListener("click", speak);
loadLists();
