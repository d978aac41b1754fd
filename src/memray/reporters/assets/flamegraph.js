"use strict";
// The flame graph page. Reads the columnar data embedded by
// reporters/flamegraph.py, builds a view tree for the current filters
// (thread, hidden frames, inversion, time range) and draws it on a canvas.
// Only nodes at least MIN_WIDTH pixels wide are laid out, so drawing costs
// what is visible, not what the capture holds.
(function () {
  const D = memray.loadData();
  const S = D.strings;
  const FR = D.frames;
  const NFR = FR.func.length;
  const NTH = D.threads.length;
  const TP = D.nodes.parent;
  const TF = D.nodes.frame;
  const NNODES = TP.length;
  const SM = D.samples;
  const NS = SM.node.length;
  const OPT = D.options;
  const SNAP = D.snapshots;
  const NSNAP = SNAP.time.length;
  // With the split of RSS recorded (docs/memory.rst): anon + file + shared ==
  // rss, and mapped is the part of the heap in mmap'd files and shared memory.
  const SPLIT = Array.isArray(SNAP.anon);

  const FLAG_IMPORT = 1;
  const FLAG_UNINTERESTING = 2;
  const FLAG_NATIVE = 4;
  const ROW = 18; // px per flame graph row
  const MIN_WIDTH = 0.35; // px: narrower nodes (and so their subtrees) are not drawn
  const MAX_ROWS = Math.floor(32000 / ROW); // canvas height limit of browsers
  const PLOT_MARGIN = { left: 72, right: 12, top: 10, bottom: 24 };

  const $ = (id) => document.getElementById(id);
  const flame = $("flame");
  const ctx = flame.getContext("2d");
  const plot = $("plot");
  const pctx = plot.getContext("2d");
  const tooltip = $("tooltip");

  const state = {
    thread: -1,
    inverted: $("inverted").checked,
    hideImport: $("hide-import").checked,
    hideUninteresting: $("hide-uninteresting").checked,
    search: "",
    zoomPath: [], // frame ids from the root to the zoomed node: survives rebuilds
    range: null, // temporal: [lo, hi] allocation slots
    peakSlot: -1, // temporal high water mark: slot whose peak is shown
    selection: null, // temporal: [t0, t1] ms picked on the plot
  };

  // --- Temporal slots -----------------------------------------------------
  // An interval's "allocated" value is the index of the first snapshot taken
  // after the allocation (its slot); slot NSNAP is after the last snapshot.
  let maxSlot = NSNAP;
  if (OPT.temporal) {
    const iv = D.temporal.intervals;
    for (let j = 0; j < iv.allocated.length; j++) {
      if (iv.allocated[j] > maxSlot) maxSlot = iv.allocated[j];
      if (iv.deallocated[j] > maxSlot) maxSlot = iv.deallocated[j];
    }
    const hwm = D.temporal.high_water_mark_by_snapshot;
    if (hwm && hwm.length - 1 > maxSlot) maxSlot = hwm.length - 1;
    state.range = [0, maxSlot];
  }

  function slotOfTime(t, isEnd) {
    if (NSNAP === 0) return isEnd ? maxSlot : 0;
    if (isEnd && t >= SNAP.time[NSNAP - 1]) return maxSlot;
    for (let i = 0; i < NSNAP; i++) if (SNAP.time[i] >= t) return i;
    return maxSlot;
  }

  function sampleValues() {
    if (!OPT.temporal) return { size: SM.size, count: SM.count };
    const size = new Float64Array(NS);
    const count = new Float64Array(NS);
    const iv = D.temporal.intervals;
    const n = iv.sample.length;
    const lo = state.range[0];
    const hi = state.range[1];
    const hwm = D.temporal.high_water_mark_by_snapshot;
    if (hwm) {
      // What was alive at the highest heap peak within the range.
      let k = -1;
      let best = -1;
      for (let i = lo; i <= Math.min(hi, hwm.length - 1); i++) {
        if (hwm[i] > best) {
          best = hwm[i];
          k = i;
        }
      }
      state.peakSlot = k;
      if (k < 0) return { size, count };
      for (let j = 0; j < n; j++) {
        const d = iv.deallocated[j];
        if (iv.allocated[j] <= k && (d < 0 || d > k)) {
          size[iv.sample[j]] += iv.size[j];
          count[iv.sample[j]] += iv.count[j];
        }
      }
    } else {
      // Allocated within the range and not freed by its end.
      for (let j = 0; j < n; j++) {
        const a = iv.allocated[j];
        const d = iv.deallocated[j];
        if (a >= lo && a <= hi && (d < 0 || d > hi)) {
          size[iv.sample[j]] += iv.size[j];
          count[iv.sample[j]] += iv.count[j];
        }
      }
    }
    return { size, count };
  }

  // --- View tree ------------------------------------------------------------
  let V = null; // the current view tree (columnar, parents before children)
  let zoomNode = 0;

  function buildView() {
    const vals = sampleValues();
    const hidden = new Uint8Array(NFR + NTH);
    for (let f = 0; f < NFR; f++) {
      const fl = FR.flags[f];
      if (
        (state.hideImport && fl & FLAG_IMPORT) ||
        (state.hideUninteresting && fl & FLAG_UNINTERESTING)
      ) {
        hidden[f] = 1;
      }
    }
    const v = {
      parent: [-1],
      frame: [-1],
      total: [0],
      count: [0],
      self: [0],
      selfCount: [0],
      depth: [0],
      children: [[]],
    };
    const K = NFR + NTH + 1;
    const childMap = new Map();
    function child(p, f) {
      const key = p * K + f;
      let c = childMap.get(key);
      if (c === undefined) {
        c = v.parent.length;
        v.parent.push(p);
        v.frame.push(f);
        v.total.push(0);
        v.count.push(0);
        v.self.push(0);
        v.selfCount.push(0);
        v.depth.push(v.depth[p] + 1);
        v.children.push([]);
        v.children[p].push(c);
        childMap.set(key, c);
      }
      return c;
    }

    const splitAll = OPT.split_threads && state.thread < 0;
    const memo = splitAll ? null : new Int32Array(NNODES).fill(-1);
    const memoMap = splitAll ? new Map() : null;
    const chain = [];
    for (let s = 0; s < NS; s++) {
      const size = vals.size[s];
      const cnt = vals.count[s];
      if (size === 0 && cnt === 0) continue;
      const t = SM.thread[s];
      if (state.thread >= 0 && t !== state.thread) continue;
      const base = splitAll ? child(0, NFR + t) : 0;
      if (state.inverted) {
        let x = base;
        v.total[x] += size;
        v.count[x] += cnt;
        for (let m = SM.node[s]; m > 0; m = TP[m]) {
          const f = TF[m];
          if (hidden[f]) continue;
          x = child(x, f);
          v.total[x] += size;
          v.count[x] += cnt;
        }
        if (base !== 0) {
          v.total[0] += size;
          v.count[0] += cnt;
        }
        continue;
      }
      // Map the sample's trie node to a view node, memoizing every node of
      // the path so that shared prefixes are mapped once.
      let m = SM.node[s];
      let mapped = base;
      chain.length = 0;
      while (m !== 0) {
        const got = splitAll ? memoMap.get(m * NTH + t) : memo[m];
        if (got !== undefined && got >= 0) {
          mapped = got;
          break;
        }
        chain.push(m);
        m = TP[m];
      }
      for (let i = chain.length - 1; i >= 0; i--) {
        const x = chain[i];
        const f = TF[x];
        if (!hidden[f]) mapped = child(mapped, f);
        if (splitAll) memoMap.set(x * NTH + t, mapped);
        else memo[x] = mapped;
      }
      v.self[mapped] += size;
      v.selfCount[mapped] += cnt;
    }
    if (!state.inverted) {
      for (let x = v.parent.length - 1; x >= 0; x--) {
        v.total[x] += v.self[x];
        v.count[x] += v.selfCount[x];
        const p = v.parent[x];
        if (p >= 0) {
          v.total[p] += v.total[x];
          v.count[p] += v.count[x];
        }
      }
    }
    for (let x = 0; x < v.children.length; x++) {
      const ch = v.children[x];
      if (ch.length > 1) ch.sort((a, b) => v.total[b] - v.total[a] || a - b);
    }
    V = v;
    resolveZoom();
  }

  function resolveZoom() {
    let z = 0;
    for (const f of state.zoomPath) {
      const next = V.children[z].find((c) => V.frame[c] === f);
      if (next === undefined) break;
      z = next;
    }
    zoomNode = z;
  }

  function pathOf(node) {
    return memray.pathOf(V, node);
  }

  // --- Labels and colours -----------------------------------------------------
  function funcName(f) {
    if (f < 0) return "<root>";
    if (f >= NFR) return S[D.threads[f - NFR]];
    return S[FR.func[f]];
  }

  function location(f) {
    if (f < 0 || f >= NFR) return "";
    const line = FR.line[f];
    return S[FR.file[f]] + (line > 0 ? ":" + line : "");
  }

  function label(node) {
    const f = V.frame[node];
    if (f < 0 || f >= NFR) return funcName(f);
    return funcName(f) + " at " + location(f);
  }

  const colorCache = new Array(NFR);
  function hash(str) {
    let h = 2166136261;
    for (let i = 0; i < str.length; i++) {
      h ^= str.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return h >>> 0;
  }
  function frameColor(f) {
    if (f < 0) return "#d0d0d0";
    if (f >= NFR) return "#a9cce3";
    let c = colorCache[f];
    if (c === undefined) {
      const h = hash(S[FR.func[f]] + "\0" + S[FR.file[f]]);
      const fl = FR.flags[f];
      let hue;
      if (fl & FLAG_IMPORT) hue = 90 + (h % 40);
      else if (fl & FLAG_NATIVE) hue = 195 + (h % 40);
      else hue = h % 55;
      const sat = 65 + ((h >>> 8) % 25);
      const light = 55 + ((h >>> 16) % 12);
      c = colorCache[f] = "hsl(" + hue + "," + sat + "%," + light + "%)";
    }
    return c;
  }

  // --- Search ------------------------------------------------------------------
  let matchFrame = null; // Uint8Array over frames, or null without a search

  function computeMatches() {
    const term = state.search.trim().toLowerCase();
    if (!term) {
      matchFrame = null;
      return;
    }
    matchFrame = new Uint8Array(NFR + NTH);
    for (let f = 0; f < NFR; f++) {
      if (
        S[FR.func[f]].toLowerCase().includes(term) ||
        S[FR.file[f]].toLowerCase().includes(term)
      ) {
        matchFrame[f] = 1;
      }
    }
    for (let t = 0; t < NTH; t++) {
      if (S[D.threads[t]].toLowerCase().includes(term)) matchFrame[NFR + t] = 1;
    }
  }

  function isMatch(node) {
    const f = V.frame[node];
    return matchFrame !== null && f >= 0 && matchFrame[f] === 1;
  }

  // Bytes under matching nodes, counting nested matches once.
  function matchedTotal() {
    const n = V.parent.length;
    const inside = new Uint8Array(n);
    let bytes = 0;
    let nodes = 0;
    for (let x = 1; x < n; x++) {
      const p = V.parent[x];
      const m = isMatch(x);
      if (m) nodes++;
      if (m && !inside[p]) bytes += V.total[x];
      inside[x] = inside[p] || m ? 1 : 0;
    }
    return { bytes, nodes };
  }

  // --- Layout and drawing ---------------------------------------------------------
  // A rect with rest[i] = k > 0 stands for the k children of node[i] too
  // narrow to draw, side by side after the drawn ones.
  let rects = { node: [], x: [], w: [], row: [], rest: [] };
  let rows = []; // per row: rect indices, left to right

  function layout(width) {
    rects = { node: [], x: [], w: [], row: [], rest: [] };
    rows = [];
    function add(node, x, w, row, rest) {
      const i = rects.node.length;
      rects.node.push(node);
      rects.x.push(x);
      rects.w.push(w);
      rects.row.push(row);
      rects.rest.push(rest || 0);
      if (rows[row] === undefined) rows[row] = [];
      rows[row].push(i);
    }
    const ancestors = [];
    for (let x = V.parent[zoomNode]; x >= 0; x = V.parent[x]) ancestors.push(x);
    ancestors.reverse();
    let row = 0;
    for (const a of ancestors) add(a, 0, width, row++);
    const total = V.total[zoomNode];
    if (total <= 0) {
      add(zoomNode, 0, width, row);
      return;
    }
    const scale = width / total;
    // Depth first, left to right, so each row's rects come out sorted by x.
    const stack = [zoomNode];
    const xs = [0];
    const ws = [width];
    const rs = [row];
    const ks = [0];
    const pos = [];
    while (stack.length) {
      const n = stack.pop();
      const x = xs.pop();
      const w = ws.pop();
      const r = rs.pop();
      const k = ks.pop();
      add(n, x, w, r, k);
      if (k > 0 || r + 1 >= MAX_ROWS) continue;
      const ch = V.children[n];
      pos.length = 0;
      let cx = x;
      let i = 0;
      for (; i < ch.length; i++) {
        const cw = V.total[ch[i]] * scale;
        if (cw < MIN_WIDTH) break; // children are sorted: the rest are narrower
        pos.push(cx);
        cx += cw;
      }
      if (i < ch.length) {
        let restWidth = 0;
        for (let j = i; j < ch.length; j++) restWidth += V.total[ch[j]] * scale;
        if (restWidth >= 1) {
          stack.push(n);
          xs.push(cx);
          ws.push(restWidth);
          rs.push(r + 1);
          ks.push(ch.length - i);
        }
      }
      for (let j = pos.length - 1; j >= 0; j--) {
        stack.push(ch[j]);
        xs.push(pos[j]);
        ws.push(V.total[ch[j]] * scale);
        rs.push(r + 1);
        ks.push(0);
      }
    }
  }

  function draw() {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(100, flame.parentElement.clientWidth);
    layout(width);
    const nrows = rows.length;
    const height = nrows * ROW;
    flame.style.height = height + "px";
    flame.width = Math.round(width * dpr);
    flame.height = Math.round(height * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
    ctx.textBaseline = "middle";
    const charW = ctx.measureText("m").width || 7;
    const zoomRow = V.depth[zoomNode];
    let matchesDrawn = 0;
    let drawn = 0;
    for (let i = 0; i < rects.node.length; i++) {
      const n = rects.node[i];
      const x = rects.x[i];
      const w = rects.w[i];
      const y = rects.row[i] * ROW;
      const rest = rects.rest[i];
      if (rest > 0) {
        ctx.globalAlpha = 1;
        ctx.fillStyle = "#cfd3d7";
        ctx.fillRect(x, y, Math.max(w - 0.5, 0.5), ROW - 1);
        continue;
      }
      drawn++;
      const matched = isMatch(n);
      if (matched) matchesDrawn++;
      ctx.globalAlpha = rects.row[i] < zoomRow ? 0.55 : 1;
      ctx.fillStyle = matched ? "#d946ef" : frameColor(V.frame[n]);
      ctx.fillRect(x, y, Math.max(w - 0.5, 0.5), ROW - 1);
      if (w > charW * 3 + 6) {
        const text = label(n);
        const room = Math.floor((w - 6) / charW);
        ctx.fillStyle = "#111";
        ctx.fillText(text.length > room ? text.slice(0, room - 1) + "\u2026" : text, x + 3, y + ROW / 2);
      }
    }
    ctx.globalAlpha = 1;

    const body = document.body.dataset;
    body.rendered = String(drawn);
    body.nodes = String(V.parent.length);
    body.total = String(V.total[0]);
    body.zoom = zoomNode === 0 ? "" : label(zoomNode);
    body.zoomTotal = String(V.total[zoomNode]);
    body.matches = String(matchesDrawn);
    body.inverted = state.inverted ? "1" : "0";
    body.thread = String(state.thread);
    $("shown-total").textContent = memray.formatBytes(V.total[0]);
    $("reset-zoom").disabled = zoomNode === 0;
    const crumbs = [];
    for (let x = zoomNode; x >= 0; x = V.parent[x]) crumbs.push(funcName(V.frame[x]));
    $("breadcrumb").textContent = zoomNode === 0 ? "" : crumbs.reverse().join(" \u203a ");
    const result = $("search-result");
    if (matchFrame === null) {
      result.textContent = "";
      body.matchedBytes = "0";
    } else {
      const m = matchedTotal();
      const pct = V.total[0] > 0 ? ((100 * m.bytes) / V.total[0]).toFixed(1) : "0.0";
      result.textContent =
        "Matched " + memray.formatBytes(m.bytes) + " (" + pct + "%) in " + m.nodes + " frames";
      body.matchedBytes = String(m.bytes);
    }
  }

  function rectAt(px, py) {
    return memray.rectAt(rects, rows, ROW, px, py);
  }

  // --- Tooltips ------------------------------------------------------------------
  function showTooltip(ev, func, loc, src, pairs) {
    memray.showTooltip(tooltip, ev, func, loc, src, pairs);
  }

  function hideTooltip() {
    tooltip.hidden = true;
  }

  function nodeTooltip(ev, n) {
    const f = V.frame[n];
    const total = V.total[0];
    const pct = total > 0 ? ((100 * V.total[n]) / total).toFixed(2) + "%" : "";
    const pairs = [
      ["Size", memray.formatBytes(V.total[n]) + "  (" + pct + ")"],
      ["Allocations", memray.formatCount(V.count[n])],
    ];
    if (!state.inverted) pairs.splice(1, 0, ["Own size", memray.formatBytes(V.self[n])]);
    let thread = "";
    for (let x = n; x > 0; x = V.parent[x]) if (V.frame[x] >= NFR) thread = funcName(V.frame[x]);
    if (thread) pairs.push(["Thread", thread]);
    const src = f >= 0 && f < NFR ? S[FR.src[f]] : "";
    showTooltip(ev, funcName(f), location(f), src, pairs);
  }

  function restTooltip(ev, i) {
    const n = rects.node[i];
    const ch = V.children[n];
    const k = rects.rest[i];
    let size = 0;
    let count = 0;
    for (let j = ch.length - k; j < ch.length; j++) {
      size += V.total[ch[j]];
      count += V.count[ch[j]];
    }
    showTooltip(ev, k + " more frames called by " + funcName(V.frame[n]), "too narrow to draw: click to zoom in", "", [
      ["Size", memray.formatBytes(size)],
      ["Allocations", memray.formatCount(count)],
    ]);
  }

  // --- Memory plot -------------------------------------------------------------------
  // The parts of RSS at sample i, bottom up; they add up to RSS.
  function rssParts(i) {
    const anon = SNAP.anon[i];
    const heap = Math.min(Math.max(0, SNAP.heap[i] - SNAP.mapped[i]), anon);
    return { heap, untracked: anon - heap, file: SNAP.file[i], shared: SNAP.shared[i] };
  }

  const BANDS = [
    ["heap", "rgba(228, 87, 46, 0.35)"],
    ["untracked", "rgba(230, 171, 2, 0.35)"],
    ["file", "rgba(27, 158, 119, 0.30)"],
    ["shared", "rgba(117, 112, 179, 0.35)"],
  ];

  // RSS stacked by what backs it: one filled band per part.
  function drawBands(g) {
    const parts = [];
    for (let i = 0; i < NSNAP; i++) parts.push(rssParts(i));
    const below = new Array(NSNAP).fill(0);
    for (const [key, color] of BANDS) {
      const above = below.map((v, i) => v + parts[i][key]);
      pctx.beginPath();
      for (let i = 0; i < NSNAP; i++) {
        const x = g.tx(SNAP.time[i]);
        if (i === 0) pctx.moveTo(x, g.vy(above[i]));
        else pctx.lineTo(x, g.vy(above[i]));
      }
      if (NSNAP === 1) pctx.lineTo(g.tx(SNAP.time[0]) + 4, g.vy(above[0]));
      for (let i = NSNAP - 1; i >= 0; i--) pctx.lineTo(g.tx(SNAP.time[i]) + (NSNAP === 1 ? 4 : 0), g.vy(below[i]));
      if (NSNAP === 1) pctx.lineTo(g.tx(SNAP.time[0]), g.vy(below[0]));
      pctx.closePath();
      pctx.fillStyle = color;
      pctx.fill();
      for (let i = 0; i < NSNAP; i++) below[i] = above[i];
    }
  }

  function plotGeometry() {
    const width = Math.max(200, plot.clientWidth);
    const height = plot.clientHeight || 180;
    const t0 = NSNAP ? SNAP.time[0] : 0;
    const t1 = NSNAP ? SNAP.time[NSNAP - 1] : 1;
    let ymax = 1;
    for (let i = 0; i < NSNAP; i++) ymax = Math.max(ymax, SNAP.rss[i], SNAP.heap[i]);
    ymax *= 1.05;
    const x0 = PLOT_MARGIN.left;
    const x1 = width - PLOT_MARGIN.right;
    const y0 = PLOT_MARGIN.top;
    const y1 = height - PLOT_MARGIN.bottom;
    const span = Math.max(t1 - t0, 1);
    return {
      width,
      height,
      t0,
      t1,
      x0,
      x1,
      y0,
      y1,
      ymax,
      tx: (t) => x0 + ((t - t0) / span) * (x1 - x0),
      xt: (x) => t0 + ((x - x0) / (x1 - x0)) * span,
      vy: (v) => y1 - (v / ymax) * (y1 - y0),
    };
  }

  function drawPlot() {
    const dpr = window.devicePixelRatio || 1;
    const g = plotGeometry();
    plot.width = Math.round(g.width * dpr);
    plot.height = Math.round(g.height * dpr);
    pctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    pctx.clearRect(0, 0, g.width, g.height);
    pctx.font = "11px system-ui, sans-serif";
    pctx.fillStyle = "#656d76";
    pctx.strokeStyle = "#d0d7de";
    pctx.lineWidth = 1;
    if (NSNAP === 0) {
      pctx.textBaseline = "middle";
      pctx.fillText("No memory samples in this capture", g.x0, (g.y0 + g.y1) / 2);
      document.body.dataset.plotPoints = "0";
      return;
    }
    // Axes and grid.
    pctx.textBaseline = "middle";
    pctx.textAlign = "right";
    for (let i = 0; i <= 4; i++) {
      const v = (g.ymax / 1.05) * (i / 4);
      const y = Math.round(g.vy(v)) + 0.5;
      pctx.beginPath();
      pctx.moveTo(g.x0, y);
      pctx.lineTo(g.x1, y);
      pctx.stroke();
      pctx.fillText(memray.formatBytes(v), g.x0 - 6, y);
    }
    pctx.textAlign = "center";
    pctx.textBaseline = "top";
    for (let i = 0; i <= 5; i++) {
      const t = g.t0 + ((g.t1 - g.t0) * i) / 5;
      pctx.textAlign = i === 0 ? "left" : i === 5 ? "right" : "center";
      pctx.fillText(((t - g.t0) / 1000).toFixed(2) + " s", g.tx(t), g.y1 + 6);
    }
    // Selection (temporal).
    if (OPT.temporal && state.selection) {
      const a = g.tx(Math.min(state.selection[0], state.selection[1]));
      const b = g.tx(Math.max(state.selection[0], state.selection[1]));
      pctx.fillStyle = "rgba(9, 105, 218, 0.15)";
      pctx.fillRect(a, g.y0, Math.max(b - a, 1), g.y1 - g.y0);
    }
    // Heap (filled, or RSS's parts stacked when recorded) and RSS (line).
    if (SPLIT) {
      drawBands(g);
    } else {
      pctx.beginPath();
      pctx.moveTo(g.tx(SNAP.time[0]), g.y1);
      for (let i = 0; i < NSNAP; i++) pctx.lineTo(g.tx(SNAP.time[i]), g.vy(SNAP.heap[i]));
      pctx.lineTo(g.tx(SNAP.time[NSNAP - 1]), g.y1);
      pctx.closePath();
      pctx.fillStyle = "rgba(228, 87, 46, 0.25)";
      pctx.fill();
    }
    for (const [key, color] of [
      ["heap", "#e4572e"],
      ["rss", "#1f77b4"],
    ]) {
      pctx.beginPath();
      for (let i = 0; i < NSNAP; i++) {
        const x = g.tx(SNAP.time[i]);
        const y = g.vy(SNAP[key][i]);
        if (i === 0) pctx.moveTo(x, y);
        else pctx.lineTo(x, y);
      }
      pctx.strokeStyle = color;
      pctx.lineWidth = 1.5;
      pctx.stroke();
      if (NSNAP === 1) {
        pctx.fillStyle = color;
        pctx.fillRect(g.tx(SNAP.time[0]) - 2, g.vy(SNAP[key][0]) - 2, 4, 4);
      }
    }
    // Where the shown high water mark was (temporal peak mode).
    if (OPT.temporal && D.temporal.high_water_mark_by_snapshot && state.peakSlot >= 0) {
      const k = Math.min(state.peakSlot, NSNAP - 1);
      const x = Math.round(g.tx(SNAP.time[k])) + 0.5;
      pctx.strokeStyle = "#0969da";
      pctx.setLineDash([4, 3]);
      pctx.beginPath();
      pctx.moveTo(x, g.y0);
      pctx.lineTo(x, g.y1);
      pctx.stroke();
      pctx.setLineDash([]);
    }
    pctx.strokeStyle = "#8c959f";
    pctx.lineWidth = 1;
    pctx.strokeRect(g.x0 + 0.5, g.y0 + 0.5, g.x1 - g.x0, g.y1 - g.y0);
    document.body.dataset.plotPoints = String(NSNAP);
  }

  function nearestSnapshot(t) {
    let lo = 0;
    let hi = NSNAP - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (SNAP.time[mid] < t) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && t - SNAP.time[lo - 1] < SNAP.time[lo] - t) lo--;
    return lo;
  }

  function updateRangeLabel() {
    const labelEl = $("range-label");
    if (!labelEl) return;
    const t0 = NSNAP ? SNAP.time[0] : 0;
    if (!state.selection) {
      labelEl.textContent = "Whole run";
    } else {
      const a = (Math.min(state.selection[0], state.selection[1]) - t0) / 1000;
      const b = (Math.max(state.selection[0], state.selection[1]) - t0) / 1000;
      labelEl.textContent = "Selected " + a.toFixed(3) + " s \u2013 " + b.toFixed(3) + " s";
    }
    document.body.dataset.range = state.range.join(",");
  }

  function setRange(lo, hi) {
    state.range = [Math.max(0, Math.min(lo, hi)), Math.min(maxSlot, Math.max(lo, hi))];
    refresh(true);
  }

  function selectTimes(ta, tb) {
    const a = Math.min(ta, tb);
    const b = Math.max(ta, tb);
    state.selection = [a, b];
    setRange(slotOfTime(a, false), slotOfTime(b, true));
  }

  // --- Wiring ------------------------------------------------------------------------
  function refresh(rebuild) {
    if (rebuild) buildView();
    draw();
    drawPlot();
    if (OPT.temporal) updateRangeLabel();
  }

  function zoomTo(node) {
    zoomNode = node;
    state.zoomPath = pathOf(node);
    hideTooltip();
    draw();
  }


  flame.addEventListener("mousemove", (ev) => {
    const [x, y] = memray.canvasPoint(flame, ev);
    const i = rectAt(x, y);
    if (i < 0) hideTooltip();
    else if (rects.rest[i] > 0) restTooltip(ev, i);
    else nodeTooltip(ev, rects.node[i]);
  });
  flame.addEventListener("mouseleave", hideTooltip);
  flame.addEventListener("click", (ev) => {
    const [x, y] = memray.canvasPoint(flame, ev);
    const i = rectAt(x, y);
    if (i >= 0) zoomTo(rects.node[i]);
  });
  $("reset-zoom").addEventListener("click", () => zoomTo(0));
  document.addEventListener("keyup", (ev) => {
    if (ev.key === "Escape") zoomTo(0);
  });

  const search = $("search");
  const onSearch = memray.debounce(() => {
    state.search = search.value;
    computeMatches();
    draw();
  }, 120);
  search.addEventListener("input", onSearch);

  $("inverted").addEventListener("change", (ev) => {
    state.inverted = ev.target.checked;
    state.zoomPath = [];
    refresh(true);
  });
  $("hide-import").addEventListener("change", (ev) => {
    state.hideImport = ev.target.checked;
    refresh(true);
  });
  $("hide-uninteresting").addEventListener("change", (ev) => {
    state.hideUninteresting = ev.target.checked;
    refresh(true);
  });
  const threadSelect = $("thread");
  if (threadSelect) {
    for (let t = 0; t < NTH; t++) {
      const opt = memray.el("option", S[D.threads[t]]);
      opt.value = String(t);
      threadSelect.appendChild(opt);
    }
    threadSelect.addEventListener("change", () => {
      state.thread = parseInt(threadSelect.value, 10);
      state.zoomPath = [];
      refresh(true);
    });
  }

  // Plot: hover shows the sample; with --temporal, dragging picks a range.
  let drag = null;
  plot.addEventListener("mousedown", (ev) => {
    if (!OPT.temporal || NSNAP === 0) return;
    const g = plotGeometry();
    const [x] = memray.canvasPoint(plot, ev);
    drag = { start: g.xt(Math.min(Math.max(x, g.x0), g.x1)), moved: false };
  });
  plot.addEventListener("mousemove", (ev) => {
    if (NSNAP === 0) return;
    const g = plotGeometry();
    const [x] = memray.canvasPoint(plot, ev);
    const t = g.xt(Math.min(Math.max(x, g.x0), g.x1));
    if (drag) {
      drag.moved = true;
      state.selection = [drag.start, t];
      drawPlot();
    }
    const i = nearestSnapshot(t);
    const rows = [
      ["Resident set size", memray.formatBytes(SNAP.rss[i])],
      ["Heap size", memray.formatBytes(SNAP.heap[i])],
    ];
    if (SPLIT) {
      // RSS by what backs it (they add up to RSS); docs/memory.rst.
      const p = rssParts(i);
      rows.push(
        ["\u2003heap: tracked allocations", memray.formatBytes(p.heap)],
        ["\u2003untracked anonymous: interpreter, static data, allocator free lists, fragmentation", memray.formatBytes(p.untracked)],
        ["\u2003file-backed: code of Python and libraries, mmap'd files", memray.formatBytes(p.file)],
        ["\u2003shared: /dev/shm, tmpfs, shared mappings", memray.formatBytes(p.shared)]
      );
      if (SNAP.mapped[i] > 0) rows.push(["Heap in mmap'd files and shared memory", memray.formatBytes(SNAP.mapped[i])]);
    }
    showTooltip(ev, ((SNAP.time[i] - SNAP.time[0]) / 1000).toFixed(3) + " s", "", "", rows);
  });
  plot.addEventListener("mouseleave", hideTooltip);
  window.addEventListener("mouseup", (ev) => {
    if (!drag) return;
    const g = plotGeometry();
    const [x] = memray.canvasPoint(plot, ev);
    const end = g.xt(Math.min(Math.max(x, g.x0), g.x1));
    const start = drag.start;
    const moved = drag.moved && Math.abs(g.tx(end) - g.tx(start)) >= 3;
    drag = null;
    if (moved) selectTimes(start, end);
    else drawPlot();
  });
  const resetRange = $("reset-range");
  if (resetRange) {
    resetRange.addEventListener("click", () => {
      state.selection = null;
      setRange(0, maxSlot);
    });
  }
  window.addEventListener(
    "resize",
    memray.debounce(() => refresh(false), 100)
  );

  // For tests and for scripting the page from the console.
  window.memrayFlamegraph = {
    state,
    view: () => V,
    zoomTo,
    setRange,
    selectTimes,
    label,
    search(term) {
      search.value = term;
      state.search = term;
      computeMatches();
      draw();
    },
    // Page coordinates of the centre of the first drawn node whose label
    // starts with prefix, or null.
    locate(prefix) {
      const r = flame.getBoundingClientRect();
      for (let i = 0; i < rects.node.length; i++) {
        if (label(rects.node[i]).startsWith(prefix)) {
          return {
            x: r.left + window.scrollX + rects.x[i] + rects.w[i] / 2,
            y: r.top + window.scrollY + rects.row[i] * ROW + ROW / 2,
            clientX: r.left + rects.x[i] + rects.w[i] / 2,
            clientY: r.top + rects.row[i] * ROW + ROW / 2,
            width: rects.w[i],
          };
        }
      }
      return null;
    },
  };

  const started = performance.now();
  refresh(true);
  document.body.dataset.renderMs = String(Math.round(performance.now() - started));
  document.body.dataset.ready = "1";
})();
