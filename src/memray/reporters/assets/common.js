"use strict";
// Shared helpers of the memray HTML reports. Program strings are only ever put
// into the page through textContent, never as markup.
var memray = (function () {
  function loadData() {
    return JSON.parse(document.getElementById("memray-data").textContent);
  }

  function formatBytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let v = n;
    while (Math.abs(v) >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return i === 0 ? v.toFixed(0) + " B" : v.toFixed(2) + " " + units[i];
  }

  function formatCount(n) {
    return Math.round(n).toLocaleString("en-US");
  }

  function debounce(fn, ms) {
    let timer = null;
    return function () {
      const args = arguments;
      if (timer !== null) clearTimeout(timer);
      timer = setTimeout(function () {
        timer = null;
        fn.apply(null, args);
      }, ms);
    };
  }

  function el(tag, text, className) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (className) e.className = className;
    return e;
  }

  // --- Flame graph canvas helpers (flamegraph.js, diff.js) -------------------
  // rects: parallel arrays x, w of drawn rectangles; rows[r]: the indices of
  // row r's rectangles, left to right. The rectangle under (px, py), or -1.
  function rectAt(rects, rows, rowHeight, px, py) {
    const list = rows[Math.floor(py / rowHeight)];
    if (!list) return -1;
    let lo = 0;
    let hi = list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const i = list[mid];
      if (px < rects.x[i]) hi = mid - 1;
      else if (px >= rects.x[i] + rects.w[i]) lo = mid + 1;
      else return i;
    }
    return -1;
  }

  function canvasPoint(canvas, ev) {
    const r = canvas.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }

  // The frames from the root's child down to node, in a tree of parallel
  // arrays parent and frame (node 0 is the root).
  function pathOf(tree, node) {
    const path = [];
    for (let x = node; x > 0; x = tree.parent[x]) path.push(tree.frame[x]);
    return path.reverse();
  }

  // Fills the tooltip element (.tt-func, .tt-loc, .tt-src, a tbody of
  // [name, value] rows) and places it beside the pointer, inside the window.
  function showTooltip(tooltip, ev, func, loc, src, pairs) {
    tooltip.querySelector(".tt-func").textContent = func;
    tooltip.querySelector(".tt-loc").textContent = loc;
    tooltip.querySelector(".tt-src").textContent = src;
    const tbody = tooltip.querySelector("tbody");
    tbody.textContent = "";
    for (const [k, val] of pairs) {
      const tr = document.createElement("tr");
      tr.appendChild(memray.el("td", k));
      tr.appendChild(memray.el("td", val));
      tbody.appendChild(tr);
    }
    tooltip.hidden = false;
    const pad = 14;
    let left = ev.clientX + pad;
    let top = ev.clientY + pad;
    const r = tooltip.getBoundingClientRect();
    if (left + r.width > window.innerWidth) left = Math.max(0, ev.clientX - r.width - pad);
    if (top + r.height > window.innerHeight) top = Math.max(0, ev.clientY - r.height - pad);
    tooltip.style.left = left + "px";
    tooltip.style.top = top + "px";
  }

  return {
    loadData,
    formatBytes,
    formatCount,
    debounce,
    el,
    rectAt,
    canvasPoint,
    pathOf,
    showTooltip,
  };
})();
