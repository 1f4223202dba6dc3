// Shared by every page: the annotator's name (asked once, kept in this browser), JSON calls
// that turn the studio's one-line errors into the status line, and drawing a path on the map.
"use strict";
const studio = {
  annotator() { return document.getElementById("annotator").value.trim(); },
  status(text, isError) {
    const s = document.getElementById("status");
    s.textContent = text;  // text, never markup
    s.className = isError ? "error" : "";
  },
  async call(method, url, body) {
    const options = {method, headers: {}};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    const data = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  },
  uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  },
  map: new Image(),
  drawMap(canvas, path, upto) {
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(studio.map, 0, 0, canvas.width, canvas.height);
    if (!path || !path.length || !studio.map.naturalWidth) return;
    const sx = canvas.width / studio.map.naturalWidth, sy = canvas.height / studio.map.naturalHeight;
    const last = Math.min(upto, path.length - 1);
    ctx.strokeStyle = "#ffeb3b"; ctx.lineWidth = 2; ctx.beginPath();
    for (let i = 0; i <= last; i++) {
      const [x, y] = path[i];
      if (i === 0) ctx.moveTo(x * sx, y * sy); else ctx.lineTo(x * sx, y * sy);
    }
    ctx.stroke();
    const [x, y] = path[last];
    ctx.fillStyle = "#e91e63"; ctx.beginPath(); ctx.arc(x * sx, y * sy, 4, 0, 2 * Math.PI); ctx.fill();
  },
  personality() {
    const select = document.getElementById("personality");
    return select ? select.value : "";
  },
};
studio.map.src = "/map.png";
(() => {
  const input = document.getElementById("annotator");
  input.value = localStorage.getItem("agentalign.annotator") || "";
  input.addEventListener("change", () => localStorage.setItem("agentalign.annotator", input.value.trim()));
  // Enter leaves the box, so the answer keys work at once
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") input.blur(); });
  const select = document.getElementById("personality");
  if (select) {
    const kept = localStorage.getItem("agentalign.personality");
    if (kept && [...select.options].some(o => o.value === kept)) select.value = kept;
    select.addEventListener("change", () => localStorage.setItem("agentalign.personality", select.value));
  }
})();
