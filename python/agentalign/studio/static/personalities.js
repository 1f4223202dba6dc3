// The Personalities page: every exported personality with its card, and one playing live
// (its ONNX through onnxruntime on the embedded island, as Unity runs it).
"use strict";
const live = {session: null, timer: null, frame: new Image(), view: null};
const figure = document.getElementById("live");

function card(c) {
  const box = document.createElement("article");
  box.className = "card";
  const h = document.createElement("h3"); h.textContent = c.name; box.append(h);
  const dl = document.createElement("dl");
  const rates = c.measured && c.measured.rates ? Object.entries(c.measured.rates)
    .map(([k, v]) => `${k} ${(100 * (v.rate ?? v)).toFixed(1)}%`).join(", ") : "";
  const facts = [["target", c.target], ["stage", `${c.stage} step ${c.step}`],
    ["outcomes", `${rates} (${c.measured ? c.measured.episodes : "?"} episodes)`]];
  if (c.studio) {
    const ev = c.studio.evaluation;
    if (ev && ev.intent) facts.push(["intent", `${ev.intent.description}: ${(100 * ev.intent.rate).toFixed(1)}% of ${ev.intent.episodes} episodes [${(100 * ev.intent.low).toFixed(1)}, ${(100 * ev.intent.high).toFixed(1)}]`]);
    facts.push(["rubric", c.studio.rubric], ["labels", `${c.studio.labels} (${c.studio.train_labels} training)`],
      ["annotators", c.studio.annotators.join(", ")],
      ["pairs", `${c.studio.pairs_chosen.random} random, ${c.studio.pairs_chosen.active} active, ${c.studio.pairs_chosen.heldout} held-out`]);
  }
  for (const [k, v] of facts) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    dl.append(dt, dd);
  }
  box.append(dl);
  if (c.heatmap) {
    const img = document.createElement("img");
    img.src = c.heatmap; img.alt = `where ${c.name} went (evaluation heatmap)`; img.className = "heatmap";
    box.append(img);
  }
  return box;
}

function show(view) {
  live.view = view;
  live.frame.onload = () => {
    const ctx = figure.querySelector(".camera").getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(live.frame, 0, 0, 256, 256);
  };
  live.frame.src = view.frame;
  studio.drawMap(figure.querySelector(".map"), view.path, view.path.length - 1);
  figure.dataset.step = view.step;
  figure.dataset.personality = view.personality;
  document.getElementById("live-caption").textContent =
    `${view.personality}, spawn ${view.spawn + 1}, decision ${view.step}` + (view.outcome ? `: ended (${view.outcome})` : "");
}

async function loop() {
  if (!live.session || (live.view && live.view.outcome)) return;
  try { show(await studio.call("POST", `/api/play/${live.session}/step`)); }
  catch (e) { studio.status(e.message, true); clearInterval(live.timer); }
}

async function init() {
  try {
    const cards = await studio.call("GET", "/api/cards");
    const box = document.getElementById("cards"), select = document.getElementById("play-personality");
    box.replaceChildren(...cards.map(card));
    for (const c of cards) { const o = document.createElement("option"); o.value = c.name; o.textContent = c.name; select.append(o); }
    if (!cards.length) studio.status("No exported personality yet: align one on the Learn page.");
  } catch (e) { studio.status(e.message, true); }
}

document.getElementById("start").addEventListener("click", async () => {
  try {
    const spawn = parseInt(document.getElementById("spawn").value, 10);
    const started = await studio.call("POST", "/api/play", {personality: document.getElementById("play-personality").value, spawn});
    live.session = started.session;
    show(started);
    document.getElementById("swap").disabled = false;
    document.getElementById("restart").disabled = false;
    clearInterval(live.timer);
    live.timer = setInterval(loop, 100);
  } catch (e) { studio.status(e.message, true); }
});
document.getElementById("swap").addEventListener("click", async () => {
  try { show(await studio.call("POST", `/api/play/${live.session}/swap`, {personality: document.getElementById("play-personality").value})); }
  catch (e) { studio.status(e.message, true); }
});
document.getElementById("restart").addEventListener("click", async () => {
  try { show(await studio.call("POST", `/api/play/${live.session}/restart`, {spawn: parseInt(document.getElementById("spawn").value, 10)})); }
  catch (e) { studio.status(e.message, true); }
});
init();
