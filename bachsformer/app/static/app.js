// The page: asks the local server for pieces, plays them, draws the piano roll and shows the score.
"use strict";

const $ = (id) => document.getElementById(id);
const NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];
const KEYBOARD = 44;   // px of note names at the left of the roll
const RULER = 18;      // px of bar numbers at the top
const PX_PER_SECOND = 48;

let info = null;
let upload = null;     // {upload, name, bars, key, roll}
let shown = null;      // the roll on screen: {roll, selectable}
let selection = null;  // [first bar, last bar], from 1
let timemap = [], played = 0, playing = new Set();

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function api(path, body, raw) {
  const options = body === undefined ? {} : {method: "POST", body: raw ? body : JSON.stringify(body),
    headers: {"Content-Type": raw ? "audio/midi" : "application/json"}};
  const response = await fetch(path, options);
  let data = {};
  try { data = await response.json(); } catch (e) { data = {error: `the server answered ${response.status}`}; }
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

function settings() {
  const number = (id) => $(id).value === "" ? null : Number($(id).value);
  return {style: $("style").value, key: $("key").value || null, form: $("form").value, bars: number("bars"),
          bpm: number("bpm"), program: Number($("program").value), temperature: number("temperature"),
          seed: number("seed")};
}

function busy(on) {
  for (const id of ["compose", "continue", "regenerate", "harmonise", "variation"]) {
    $(id).disabled = on || (id !== "compose" && !upload);
  }
}

async function run(path, body, what) {
  busy(true);
  const started = performance.now();
  status(`${what}…`);
  try {
    const {job} = await api(path, body);
    let state;
    do {
      await new Promise((r) => setTimeout(r, 80));
      state = await api(`/api/jobs/${job}`);
    } while (state.state === "queued" || state.state === "running");
    if (state.state === "failed") throw new Error(state.error);
    await show(state.piece);
    await playable();
    const seconds = (performance.now() - started) / 1000;  // click to score shown and audio ready to play
    status(`${what}: done in ${seconds.toFixed(1)} s. ${state.piece.notes.join(" ")}`);
    document.body.dataset.composeSeconds = seconds.toFixed(3);
    document.body.dataset.done = Number(document.body.dataset.done || 0) + 1;
  } catch (error) {
    status(error.message, true);
  } finally {
    busy(false);
  }
}

function playable() {  // resolves when the audio can start, at once if there is none
  const audio = $("audio");
  if (!audio.getAttribute("src") || audio.readyState >= 3) return Promise.resolve();
  return new Promise((resolve) => {
    audio.addEventListener("canplay", resolve, {once: true});
    audio.addEventListener("error", resolve, {once: true});
  });
}

async function show(piece) {
  $("result").hidden = false;
  $("title").textContent = piece.title;
  $("seed-used").textContent = `seed ${piece.seed}`;
  $("seed-used").dataset.seed = piece.seed;
  const audio = $("audio");
  if (piece.files.wav) { audio.src = piece.files.wav; audio.hidden = false; } else { audio.removeAttribute("src"); audio.hidden = true; }
  for (const kind of ["midi", "wav", "musicxml"]) {
    const link = $(`download-${kind}`);
    link.hidden = !piece.files[kind];
    if (piece.files[kind]) link.href = piece.files[kind];
  }
  const pages = await Promise.all(piece.svg.map((url) => fetch(url).then((r) => r.text())));
  $("score").innerHTML = pages.join("\n");
  $("score").hidden = pages.length === 0;
  timemap = piece.timemap; played = 0; playing = new Set();
  shown = {roll: piece.roll, selectable: false};
  selection = null;
  drawRoll();
  document.body.dataset.ready = piece.seed;
  document.body.dataset.pieces = Number(document.body.dataset.pieces || 0) + 1;
}

function drawRoll() {
  if (!shown) return;
  const roll = shown.roll, canvas = $("roll"), g = canvas.getContext("2d");
  const pitches = roll.notes.map((n) => n[0]);
  const low = Math.min(...pitches, 60) - 2, high = Math.max(...pitches, 72) + 2;
  const rows = high - low + 1, rowHeight = Math.max(3, Math.floor((canvas.height - RULER) / rows));
  canvas.height = RULER + rows * rowHeight;
  canvas.width = Math.max($("roll-box").clientWidth, KEYBOARD + roll.duration * PX_PER_SECOND + 20);
  const x = (seconds) => KEYBOARD + seconds * PX_PER_SECOND;
  const y = (pitch) => RULER + (high - pitch) * rowHeight;
  g.fillStyle = "white"; g.fillRect(0, 0, canvas.width, canvas.height);
  for (let p = low; p <= high; p++) {  // black keys shaded, C's named
    if ([1, 3, 6, 8, 10].includes(p % 12)) { g.fillStyle = "#f3efe8"; g.fillRect(KEYBOARD, y(p), canvas.width, rowHeight); }
  }
  if (selection) {
    const [a, b] = selection, end = b < roll.bars.length ? roll.bars[b] : roll.duration;
    g.fillStyle = "rgba(122, 59, 30, 0.15)";
    g.fillRect(x(roll.bars[a - 1]), RULER, x(end) - x(roll.bars[a - 1]), canvas.height);
  }
  g.font = "11px system-ui, sans-serif";
  roll.bars.forEach((seconds, i) => {
    g.strokeStyle = "#b9ab98"; g.beginPath(); g.moveTo(x(seconds), RULER - 4); g.lineTo(x(seconds), canvas.height); g.stroke();
    g.fillStyle = "#5a4a3a"; g.fillText(String(i + 1), x(seconds) + 2, 12);
  });
  for (const [pitch, start, end, isNew] of roll.notes) {
    g.fillStyle = isNew ? "#c0392b" : "#3b2f2a";
    g.fillRect(x(start), y(pitch) + 0.5, Math.max(2, (end - start) * PX_PER_SECOND - 1), rowHeight - 1);
  }
  g.fillStyle = "#fbf8f1"; g.fillRect(0, 0, KEYBOARD, canvas.height);
  g.fillStyle = "#3b2f2a";
  for (let p = low; p <= high; p++) {
    if (p % 12 === 0 || rowHeight >= 10) g.fillText(`${NAMES[p % 12]}${Math.floor(p / 12) - 1}`, 4, y(p) + rowHeight - 1);
  }
  const audio = $("audio");
  if (audio.src && audio.currentTime > 0) {
    g.strokeStyle = "#c0392b"; g.lineWidth = 2;
    g.beginPath(); g.moveTo(x(audio.currentTime), 0); g.lineTo(x(audio.currentTime), canvas.height); g.stroke();
    g.lineWidth = 1;
  }
}

function markScore(ms) {  // the notes sounding at `ms` in the score's SVG, from the piece's timemap
  if (played > 0 && timemap[played - 1].ms > ms) { for (const id of playing) mark(id, false); playing = new Set(); played = 0; }
  while (played < timemap.length && timemap[played].ms <= ms) {
    for (const id of timemap[played].off) { playing.delete(id); mark(id, false); }
    for (const id of timemap[played].on) { playing.add(id); mark(id, true); }
    played++;
  }
}

function mark(id, on) {
  const element = document.getElementById(id);
  if (element) element.classList.toggle("playing", on);
}

function follow() {
  const audio = $("audio");
  drawRoll();
  markScore(audio.currentTime * 1000);
  const box = $("roll-box"), at = KEYBOARD + audio.currentTime * PX_PER_SECOND;
  if (at > box.scrollLeft + box.clientWidth * 0.8 || at < box.scrollLeft) box.scrollLeft = at - box.clientWidth * 0.2;
  if (!audio.paused) requestAnimationFrame(follow);
}

function barAt(event) {
  const roll = shown.roll, rect = $("roll").getBoundingClientRect();
  const seconds = (event.clientX - rect.left - KEYBOARD) / PX_PER_SECOND;
  let bar = 1;
  roll.bars.forEach((start, i) => { if (seconds >= start) bar = i + 1; });
  return bar;
}

function selectBars(a, b) {
  selection = [Math.min(a, b), Math.max(a, b)];
  $("from-bar").value = selection[0]; $("to-bar").value = selection[1];
  drawRoll();
}

async function sendUpload(file, name) {
  status(`reading ${name}…`);
  busy(true);
  try {
    upload = await api(`/api/upload?name=${encodeURIComponent(name)}`, file, true);
    $("upload-info").textContent = `${upload.name}: ${upload.bars} bars, ${upload.key}`;
    for (const id of ["from-bar", "to-bar"]) { $(id).disabled = false; $(id).max = upload.bars; }
    $("result").hidden = false;
    $("title").textContent = upload.name;
    shown = {roll: upload.roll, selectable: true};
    $("audio").removeAttribute("src"); $("score").innerHTML = "";
    selectBars(1, Math.min(upload.bars, 2));
    status(`${upload.name} is ready: continue it, or choose bars to regenerate.`);
  } catch (error) {
    status(error.message, true);
  } finally {
    busy(false);
  }
}

async function start() {
  try {
    info = await api("/api/info");
  } catch (error) {
    status(`cannot reach the bachsformer server: ${error.message}`, true);
    return;
  }
  for (const style of info.styles) $("style").add(new Option(style, style, style === info.default_style, style === info.default_style));
  for (const key of info.keys) $("key").add(new Option(key, key));
  for (const [name, program] of Object.entries(info.instruments)) $("program").add(new Option(name, program));
  $("bars").max = info.max_bars;
  $("bpm").placeholder = info.default_bpm;
  $("compose").addEventListener("click", () => run("/api/compose", settings(), "composing"));
  $("continue").addEventListener("click", () => run("/api/continue", {...settings(), upload: upload.upload},
                                                    `continuing ${upload.name}`));
  $("harmonise").addEventListener("click", () => run("/api/harmonise", {...settings(), upload: upload.upload},
                                                     `harmonising ${upload.name}`));
  $("variation").addEventListener("click", () => run("/api/variation", {...settings(), upload: upload.upload},
                                                     `varying ${upload.name}`));
  $("regenerate").addEventListener("click", () => {
    const a = Number($("from-bar").value), b = Number($("to-bar").value);
    run("/api/regenerate", {...settings(), upload: upload.upload, ranges: [[a, b]]}, `regenerating bars ${a}-${b}`);
  });
  $("upload").addEventListener("change", () => { const f = $("upload").files[0]; if (f) sendUpload(f, f.name); });
  $("reuse-seed").addEventListener("click", () => { $("seed").value = $("seed-used").dataset.seed; });
  const formChanged = () => { $("bars").disabled = $("form").value === "binary"; };
  const styleChanged = () => { $("form").value = info.default_forms[$("style").value] || "binary"; formChanged(); };
  $("form").addEventListener("change", formChanged);
  $("style").addEventListener("change", styleChanged);
  styleChanged();
  $("audio").addEventListener("play", () => requestAnimationFrame(follow));
  $("audio").addEventListener("seeked", () => { drawRoll(); markScore($("audio").currentTime * 1000); });
  let dragFrom = null;
  $("roll").addEventListener("mousedown", (e) => { if (upload) { dragFrom = barAt(e); selectBars(dragFrom, dragFrom); } });
  $("roll").addEventListener("mousemove", (e) => { if (dragFrom !== null) selectBars(dragFrom, barAt(e)); });
  window.addEventListener("mouseup", () => { dragFrom = null; });
  for (const id of ["from-bar", "to-bar"]) $(id).addEventListener("change", () => {
    selectBars(Number($("from-bar").value) || 1, Number($("to-bar").value) || 1);
  });
  window.addEventListener("resize", drawRoll);
  busy(false);
  status("Press Compose for a new piece.");
  document.body.dataset.loaded = "1";
}

start();
