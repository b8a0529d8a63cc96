// The voicebot page: Pipecat's official client over /ws, a transcript, a state badge, a mic
// meter, the last turn's latency, push-to-talk, and why the session ended.
import { PipecatClient } from "@pipecat-ai/client-js";
import { WavMediaManager, WebSocketTransport } from "@pipecat-ai/websocket-transport";

const $ = (id) => document.getElementById(id);
const RECORDER_CHUNK_SIZE = 512; // samples per mic chunk sent: 32 ms at 16 kHz
const PLAYER_SAMPLE_RATE = 24000;

// What automated checks read (see README): kept in sync with what the page shows.
const voicebot = { state: "idle", transcripts: [], endedReason: null, botAudioMs: 0 };
window.voicebot = voicebot;

const STATE_LABELS = {
  idle: "Ready to call", connecting: "Connecting…", listening: "Listening",
  thinking: "Thinking…", speaking: "Speaking", ended: "Ended",
};

const ENDED_WORDS = {
  idle_timeout: "we stopped hearing from your microphone",
  silence_timeout: "no one spoke",
  max_duration: "the call reached its time limit",
  user_goodbye: "you said goodbye",
  client_hangup: "you hung up",
  server_shutdown: "the server is restarting",
  error: "something went wrong on our side",
};

// Knows when the bot's audio has finished playing here (the server sends it ahead of time),
// so the page can hang up after the goodbye has been heard, not while it is still playing.
class PlaybackTrackingMediaManager extends WavMediaManager {
  playEndsAt = 0;

  bufferBotAudio(data, id) {
    const now = performance.now();
    this.playEndsAt = Math.max(this.playEndsAt, now) + (data.byteLength / 2 / PLAYER_SAMPLE_RATE) * 1000;
    return super.bufferBotAudio(data, id);
  }

  async userStartedSpeaking() {
    this.playEndsAt = performance.now(); // an interruption drops what was queued
    return super.userStartedSpeaking();
  }

  async playedOut() {
    while (performance.now() < this.playEndsAt) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(250, this.playEndsAt - performance.now())));
    }
  }
}

let client = null;
let mediaManager = null;
let botSpeakingSince = null;
let pttHeld = false;
const botSegments = new Map(); // segment id -> transcript entry

function setState(state) {
  voicebot.state = state;
  const badge = $("state");
  badge.textContent = STATE_LABELS[state];
  badge.className = `state state-${state}`;
}

function render() {
  const box = $("transcript");
  box.replaceChildren(...voicebot.transcripts.map(({ role, text, final }) => {
    const p = document.createElement("p");
    p.className = `msg ${role}${final ? "" : " interim"}`;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Bot";
    p.append(who, document.createTextNode(text));
    return p;
  }));
  box.scrollTop = box.scrollHeight;
}

function addUserText(text, final) {
  const last = voicebot.transcripts.at(-1);
  if (last && last.role === "user" && !last.final) {
    Object.assign(last, { text, final });
  } else {
    voicebot.transcripts.push({ role: "user", text, final });
  }
  render();
}

function addBotText(segmentId, text) {
  const existing = botSegments.get(segmentId);
  if (existing) {
    existing.text = text;
  } else {
    const entry = { role: "bot", text, final: true };
    botSegments.set(segmentId, entry);
    voicebot.transcripts.push(entry);
  }
  render();
}

function endedText(data) {
  const words = data.detail || ENDED_WORDS[data.reason] || data.reason;
  return `Ended: ${words}.`;
}

function showEnded(text) {
  setState("ended");
  $("ended-text").textContent = text;
  $("ended").hidden = false;
  $("call").textContent = "Call";
  $("call").classList.remove("hangup");
  $("level").style.width = "0";
}

function stopBotClock() {
  if (botSpeakingSince !== null) {
    voicebot.botAudioMs += performance.now() - botSpeakingSince;
    botSpeakingSince = null;
  }
}

function sendPtt(active) {
  if (client && pttHeld !== active) {
    pttHeld = active;
    $("talk").classList.toggle("held", active);
    client.sendClientMessage("ptt", { active });
  }
}

async function connect() {
  $("ended").hidden = true;
  voicebot.endedReason = null;
  setState("connecting");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  mediaManager = new PlaybackTrackingMediaManager(RECORDER_CHUNK_SIZE, 16000);
  client = new PipecatClient({
    // The default media manager loads Daily's call bundle from the internet; this one is
    // self-contained: mic capture (with the browser's echo cancellation) and a PCM player.
    transport: new WebSocketTransport({
      mediaManager,
      recorderSampleRate: 16000,
      playerSampleRate: PLAYER_SAMPLE_RATE,
    }),
    enableMic: true,
    enableCam: false,
    callbacks: {
      onBotReady: () => setState("listening"),
      onUserStartedSpeaking: () => setState("listening"),
      onUserStoppedSpeaking: () => setState("thinking"),
      onBotLlmStarted: () => { if (voicebot.state !== "speaking") setState("thinking"); },
      onBotStartedSpeaking: () => { botSpeakingSince = performance.now(); setState("speaking"); },
      onBotStoppedSpeaking: () => { stopBotClock(); if (voicebot.state !== "ended") setState("listening"); },
      onUserTranscript: (data) => addUserText(data.text, data.final),
      onBotOutput: (data) => addBotText(data.segment_id ?? data.text, data.text),
      onLocalAudioLevel: (level) => { $("level").style.width = `${Math.min(100, Math.round(level * 300))}%`; },
      onMetrics: (data) => {
        if (data.turn && data.turn.voice_to_voice_secs != null) {
          $("latency").textContent = `${Math.round(data.turn.voice_to_voice_secs * 1000)} ms`;
        }
      },
      onServerMessage: (data) => {
        if (data && data.type === "session-ended") {
          voicebot.endedReason = data.reason;
          showEnded(endedText(data));
          finishAfterGoodbye(client, mediaManager);
        }
      },
      onDisconnected: () => {
        stopBotClock();
        if (voicebot.state !== "ended") showEnded("Ended: the connection closed.");
        client = null;
        pttHeld = false;
      },
      onError: (message) => console.warn("voicebot: server error", message),
    },
  });
  $("call").textContent = "Hang up";
  $("call").classList.add("hangup");
  try {
    // A single-use session token: the server hands the page one only if its operator allows
    // it (a private server, or VOICEBOT_ANONYMOUS_PAGE_TOKENS); otherwise say why, not "failed".
    const bot = $("bot").value;
    const response = await fetch("/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(bot ? { bot } : {}),
    });
    const session = await response.json().catch(() => ({}));
    if (!response.ok) {
      showEnded(`Ended: ${session.error || `the server refused a session (HTTP ${response.status})`}.`);
      client = null;
      return;
    }
    const query = new URLSearchParams();
    if (bot) query.set("bot", bot);
    if (session.token) query.set("token", session.token);
    const search = query.size ? `?${query}` : "";
    await client.connect({ wsUrl: `${scheme}://${location.host}/ws${search}` });
    if ($("ptt-mode").checked) sendPtt(false); // enter push-to-talk mode, button up
  } catch (error) {
    console.warn("voicebot: could not connect", error);
    showEnded("Ended: could not reach the bot.");
    client = null;
  }
}

async function finishAfterGoodbye(current, player) {
  // The bot has ended the session: hang up ourselves once its goodbye has played out.
  await player.playedOut();
  if (client === current) await current.disconnect();
}

async function hangUp() {
  if (client) {
    const current = client;
    voicebot.endedReason = "client_hangup";
    showEnded(endedText({ reason: "client_hangup" }));
    await current.disconnect();
  }
}

$("call").addEventListener("click", () => (client ? hangUp() : connect()));
$("again").addEventListener("click", () => connect());
$("ptt-mode").addEventListener("change", (event) => {
  $("talk").hidden = !event.target.checked;
  if (event.target.checked) sendPtt(false);
});
const talk = $("talk");
talk.addEventListener("pointerdown", () => sendPtt(true));
for (const type of ["pointerup", "pointerleave", "pointercancel"]) talk.addEventListener(type, () => sendPtt(false));

// With several bots, let the user pick one (`?bot=NAME` preselects it). /healthz may be kept off
// a public ingress: then the choice stays hidden and the server's default bot answers.
async function listBots() {
  try {
    const response = await fetch("/healthz");
    const { bots = [], default_bot: fallback } = response.ok ? await response.json() : {};
    if (bots.length < 2) return;
    const wanted = new URLSearchParams(location.search).get("bot");
    $("bot").replaceChildren(...bots.map((name) => new Option(name, name, false, name === (wanted || fallback))));
    $("bot-choice").hidden = false;
  } catch (error) {
    console.warn("voicebot: could not list the bots", error);
  }
}

setState("idle");
const listed = listBots();
if (new URLSearchParams(location.search).get("autoconnect") === "1") listed.then(() => connect());
