// One committed turn through the official openai Node SDK's realtime client (OpenAIRealtimeWS, which
// only dials wss://): connects to https://$SPEECH_HOST:$SPEECH_PORT/v1 with `intent=transcription`,
// resolving $SPEECH_HOST to $SPEECH_IP for this socket only and trusting the CA in $SPEECH_CA, sends
// the 24 kHz PCM16 file $AUDIO in 200 ms appends, commits, and prints the completed event as JSON.
import fs from 'node:fs';
import net from 'node:net';
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';

const { SPEECH_HOST, SPEECH_IP, SPEECH_PORT, SPEECH_CA, AUDIO } = process.env;

// Node 20 asks with {all: true} (autoSelectFamily): answer with a list
function lookup(hostname, options, callback) {
  const family = net.isIP(SPEECH_IP);
  if (options?.all) return process.nextTick(callback, null, [{ address: SPEECH_IP, family }]);
  return process.nextTick(callback, null, SPEECH_IP, family);
}

const client = new OpenAI({ apiKey: process.env.SPEECH_API_KEY ?? 'unused', baseURL: `https://${SPEECH_HOST}:${SPEECH_PORT}/v1` });
const rt = new OpenAIRealtimeWS({ intent: 'transcription', options: { lookup, ca: fs.readFileSync(SPEECH_CA) } }, client);
const pcm = fs.readFileSync(AUDIO);
const timer = setTimeout(() => { console.error('no transcript within 300 s'); process.exit(2); }, 300_000);

rt.on('error', (err) => {
  console.error('realtime error:', err.message, err.cause?.code ?? '');
  process.exit(1);
});
rt.on('session.created', () => {
  rt.send({ type: 'session.update', session: { type: 'transcription', audio: { input: {
    format: { type: 'audio/pcm', rate: 24000 }, turn_detection: null,
    transcription: { model: 'whisper-1', language: 'en' } } } } });
});
rt.on('session.updated', () => {
  for (let offset = 0; offset < pcm.length; offset += 9600) {
    rt.send({ type: 'input_audio_buffer.append', audio: pcm.subarray(offset, offset + 9600).toString('base64') });
  }
  rt.send({ type: 'input_audio_buffer.commit' });
});
rt.on('conversation.item.input_audio_transcription.completed', (event) => {
  console.log(JSON.stringify({ url: rt.url.href, transcript: event.transcript, usage: event.usage }));
  clearTimeout(timer);
  rt.close();
});
