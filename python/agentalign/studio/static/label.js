// The Label page: two clips in lock step from one clock, one answer per pair.
// Both players draw frame min(clock, length - 1) of their clip at every tick, so they cannot
// drift: play, seek, step and speed all move the one clock.
"use strict";
const FPS = 10;  // decisions per second in the game
const S = {pair: null, images: {}, lengths: {}, paths: {}, frame: 0, last: 0, playing: true,
           busy: false, request: null, answered: 0};
const players = {left: document.getElementById("player-left"), right: document.getElementById("player-right")};
const scrub = document.getElementById("scrub"), clock = document.getElementById("clock");
const buttons = [...document.querySelectorAll("[data-answer]")];

function total() { return Math.max(S.lengths.left || 1, S.lengths.right || 1); }

function draw() {
  const frame = Math.floor(S.frame);
  for (const side of ["left", "right"]) {
    const player = players[side], img = S.images[side];
    if (!img) continue;
    const f = Math.min(frame, S.lengths[side] - 1), h = img.naturalWidth;
    const camera = player.querySelector(".camera").getContext("2d");
    camera.imageSmoothingEnabled = false;
    camera.drawImage(img, 0, f * h, h, h, 0, 0, 256, 256);
    studio.drawMap(player.querySelector(".map"), S.paths[side], f);
    player.dataset.frame = f;
    player.querySelector(".frameno").textContent = `${f + 1} / ${S.lengths[side]}`;
  }
  scrub.value = frame;
  clock.dataset.frame = frame;
  clock.textContent = `${frame + 1} / ${total()}`;
}

function tick(now) {
  const dt = S.last ? (now - S.last) / 1000 : 0;
  S.last = now;
  if (S.playing && S.pair) {
    const speed = parseFloat(document.getElementById("speed").value);
    S.frame += dt * FPS * speed;
    if (S.frame > total() - 1) {
      if (document.getElementById("loop").checked) S.frame = 0;
      else { S.frame = total() - 1; setPlaying(false); }
    }
  }
  draw();
  requestAnimationFrame(tick);
}

function setPlaying(on) {
  S.playing = on;
  document.getElementById("play").textContent = on ? "Pause" : "Play";
}

function seek(frame) {
  S.frame = Math.max(0, Math.min(total() - 1, frame));
  draw();
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load ${src}`));
    img.src = src;
  });
}

async function nextPair() {
  const personality = studio.personality();
  if (!personality) { studio.status("Create a personality first (New personality).", true); return; }
  if (!studio.annotator()) { studio.status("Type your name in the Annotator box first.", true); return; }
  buttons.forEach(b => b.disabled = true);
  try {
    const pair = await studio.call("GET", `/api/next?personality=${encodeURIComponent(personality)}&annotator=${encodeURIComponent(studio.annotator())}`);
    const [left, right] = await Promise.all([
      loadImage(`/api/clip/${pair.left.trajectory}.png`), loadImage(`/api/clip/${pair.right.trajectory}.png`)]);
    S.images = {left, right};
    S.lengths = {left: pair.left.length, right: pair.right.length};
    S.paths = {left: pair.left.path, right: pair.right.path};
    S.pair = pair;
    S.request = studio.uuid();
    players.left.dataset.trajectory = pair.left.trajectory;
    players.right.dataset.trajectory = pair.right.trajectory;
    document.body.dataset.pair = pair.pair;
    document.getElementById("rubric").textContent = pair.rubric;
    document.getElementById("how").textContent = `(${pair.how} pair #${pair.pair})`;
    scrub.max = total() - 1;
    seek(0);
    setPlaying(true);
    S.busy = false;
    buttons.forEach(b => b.disabled = false);
    document.body.dataset.ready = "1";  // answers count from now (keys before are ignored)
    studio.status("");
  } catch (e) {
    S.pair = null;
    studio.status(e.message, true);
  }
}

async function answer(kind) {
  if (S.busy || !S.pair) return;  // one answer per pair: a double click sends one
  S.busy = true;
  document.body.dataset.ready = "0";
  buttons.forEach(b => b.disabled = true);
  try {
    await studio.call("POST", "/api/answer", {
      personality: studio.personality(), pair: S.pair.pair, answer: kind,
      shown_left: S.pair.shown_left, annotator: studio.annotator(), request: S.request});
    S.answered += 1;
    document.getElementById("count").textContent = `${S.answered} answered here`;
    document.body.dataset.answered = S.answered;
    await nextPair();
  } catch (e) {
    studio.status(e.message, true);
    S.busy = false;  // the same request id again: a retry cannot write twice
    document.body.dataset.ready = "1";
    buttons.forEach(b => b.disabled = false);
  }
}

buttons.forEach(b => b.addEventListener("click", () => answer(b.dataset.answer)));
document.getElementById("play").addEventListener("click", () => setPlaying(!S.playing));
document.getElementById("back").addEventListener("click", () => { setPlaying(false); seek(Math.floor(S.frame) - 1); });
document.getElementById("forward").addEventListener("click", () => { setPlaying(false); seek(Math.floor(S.frame) + 1); });
scrub.addEventListener("input", () => { setPlaying(false); seek(parseInt(scrub.value, 10)); });
const KEYS = {ArrowLeft: "left", "1": "left", ArrowRight: "right", "2": "right", "=": "equal",
              "3": "equal", c: "cant_tell", "4": "cant_tell", s: "skip", "5": "skip"};
document.addEventListener("keydown", (e) => {
  if (e.target.closest("input, textarea, select")) return;
  if (KEYS[e.key]) { e.preventDefault(); answer(KEYS[e.key]); }
  else if (e.key === " ") { e.preventDefault(); setPlaying(!S.playing); }
  else if (e.key === ",") { setPlaying(false); seek(Math.floor(S.frame) - 1); }
  else if (e.key === ".") { setPlaying(false); seek(Math.floor(S.frame) + 1); }
});
document.getElementById("personality").addEventListener("change", nextPair);
document.getElementById("annotator").addEventListener("change", () => { if (!S.pair) nextPair(); });
document.getElementById("create").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  try {
    const p = await studio.call("POST", "/api/personalities", Object.fromEntries(form));
    const option = document.createElement("option");
    option.value = p.name; option.textContent = p.name;
    document.getElementById("personality").append(option);
    document.getElementById("personality").value = p.name;
    localStorage.setItem("agentalign.personality", p.name);
    e.target.reset();
    document.getElementById("new-personality").open = false;
    nextPair();
  } catch (err) { studio.status(err.message, true); }
});
requestAnimationFrame(tick);
nextPair();
