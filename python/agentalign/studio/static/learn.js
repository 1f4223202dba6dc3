// The Learn page: labels so far, agreement, the ensemble's held-out accuracy over time, jobs.
"use strict";
function cell(row, text) { const td = row.insertCell(); td.textContent = text; return td; }

function curve(fits) {
  const svg = document.getElementById("curve"), W = 420, H = 180, P = 30;
  svg.replaceChildren();
  const points = fits.filter(f => f.accuracy !== null);
  const ns = "http://www.w3.org/2000/svg";
  const axis = document.createElementNS(ns, "path");
  axis.setAttribute("d", `M${P},${P / 2} V${H - P} H${W - 10}`);
  axis.setAttribute("stroke", "#888"); axis.setAttribute("fill", "none");
  svg.append(axis);
  const y = a => (H - P) - (H - 1.5 * P) * a;
  for (const level of [0.5, 0.75, 1.0]) {  // gridlines, so the curve can be read
    const grid = document.createElementNS(ns, "path");
    grid.setAttribute("d", `M${P},${y(level)} H${W - 10}`);
    grid.setAttribute("stroke", "#ddd"); svg.append(grid);
    const tick = document.createElementNS(ns, "text");
    tick.setAttribute("x", 0); tick.setAttribute("y", y(level) + 4); tick.setAttribute("font-size", "10");
    tick.textContent = `${100 * level}%`; svg.append(tick);
  }
  if (!points.length) return;
  const maxN = Math.max(...points.map(f => f.train_labels), 1);
  const x = n => P + (W - P - 10) * n / maxN;
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.map(f => `${x(f.train_labels)},${y(f.accuracy)}`).join(" "));
  line.setAttribute("stroke", "#1565c0"); line.setAttribute("fill", "none"); line.setAttribute("stroke-width", "2");
  svg.append(line);
  const last = points[points.length - 1];
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", P + 4); label.setAttribute("y", 12);
  label.textContent = `${(100 * last.accuracy).toFixed(1)}% on ${last.heldout_pairs} held-out pairs after ${last.train_labels} labels`;
  svg.append(label);
}

async function refresh() {
  const personality = studio.personality();
  document.getElementById("export").href = `/api/labels.jsonl?personality=${encodeURIComponent(personality)}`;
  try {
    const jobs = await studio.call("GET", "/api/jobs");
    const body = document.querySelector("#jobs tbody");
    body.replaceChildren();
    for (const j of jobs) {
      const row = body.insertRow();
      cell(row, j.name); cell(row, j.state + (j.error ? `: ${j.error}` : "")); cell(row, j.step || "");
      const p = j.progress;
      cell(row, p ? `${p.stage}: ${p.done}${p.total ? " / " + p.total : ""} ${p.unit || ""}` : "");
    }
    if (!personality) return;
    const s = await studio.call("GET", `/api/stats?personality=${encodeURIComponent(personality)}`);
    const table = document.querySelector("#labels tbody");
    table.replaceChildren();
    const rows = [
      ["answers", s.labels], ["training labels (budget)", `${s.train_labels} / ${s.budget}`],
      ["held-out labels", s.heldout_labels],
      ["by answer", Object.entries(s.by_answer).map(([k, v]) => `${k} ${v}`).join(", ")],
      ["by annotator", Object.entries(s.by_annotator).map(([k, v]) => `${k} ${v}`).join(", ")],
      ["pairs chosen", Object.entries(s.by_how).map(([k, v]) => `${k} ${v}`).join(", ")],
      ["agreement (pairs labelled twice)", s.agreement === null ? "none labelled twice yet" :
        `${(100 * s.agreement).toFixed(0)}% of ${s.pairs_labelled_twice}`]];
    for (const [k, v] of rows) { const r = table.insertRow(); cell(r, k); cell(r, v); }
    curve(s.fits);
    const pool = document.querySelector("#pool tbody");
    pool.replaceChildren();
    for (const p of s.pool) { const r = pool.insertRow(); cell(r, p.corpus); cell(r, p.kind); cell(r, p.episodes); }
  } catch (e) { studio.status(e.message, true); }
}

document.getElementById("align").addEventListener("click", async () => {
  try {
    const start = document.getElementById("start").value || null;
    const job = await studio.call("POST", "/api/align", {personality: studio.personality(), start});
    studio.status(`started ${job.name}`);
    refresh();
  } catch (e) { studio.status(e.message, true); }
});
document.getElementById("refit").addEventListener("click", async () => {
  try { await studio.call("POST", "/api/refit", {personality: studio.personality()}); refresh(); }
  catch (e) { studio.status(e.message, true); }
});
document.getElementById("personality").addEventListener("change", refresh);
refresh();
setInterval(refresh, 2000);
