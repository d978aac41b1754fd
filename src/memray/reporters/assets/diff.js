"use strict";
// The diff page. Reads the columnar trie embedded by reporters/diff.py (the
// flame graph's layout, with a BASE and a NEW value per sample), builds the
// view tree for the current filters and draws it on a canvas: widths from
// NEW (or BASE, or the larger), colours from the change, red for growth and
// blue for shrinkage. Nodes narrower than MIN_WIDTH pixels are not laid out.
(function () {
  const D = memray.loadData();
  const S = D.strings;
  const FR = D.frames;
  const NFR = FR.func.length;
  const TP = D.nodes.parent;
  const TF = D.nodes.frame;
  const NNODES = TP.length;
  const SM = D.samples;
  const NS = SM.node.length;

  const FLAG_IMPORT = 1;
  const FLAG_UNINTERESTING = 2;
  const ROW = 18; // px per row
  const MIN_WIDTH = 0.35; // px
  const MAX_ROWS = Math.floor(32000 / ROW); // canvas height limit of browsers

  const $ = (id) => document.getElementById(id);
  const flame = $("flame");
  const ctx = flame.getContext("2d");
  const tooltip = $("tooltip");

  const state = {
    width: $("width").value,
    hideImport: $("hide-import").checked,
    hideUninteresting: $("hide-uninteresting").checked,
    search: "",
    zoomPath: [],
  };

  function signedBytes(n) {
    if (n === 0) return "0 B";
    return (n > 0 ? "+" : "-") + memray.formatBytes(Math.abs(n));
  }
  function signedCount(n) {
    if (n === 0) return "0";
    return (n > 0 ? "+" : "-") + memray.formatCount(Math.abs(n));
  }

  // --- View tree ------------------------------------------------------------
  let V = null;
  let zoomNode = 0;

  function buildView() {
    const hidden = new Uint8Array(NFR);
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
      base: [0],
      news: [0],
      baseCount: [0],
      newCount: [0],
      width: [0],
      depth: [0],
      children: [[]],
    };
    const childMap = new Map();
    function child(p, f) {
      const key = p * (NFR + 1) + f;
      let c = childMap.get(key);
      if (c === undefined) {
        c = v.parent.length;
        v.parent.push(p);
        v.frame.push(f);
        v.base.push(0);
        v.news.push(0);
        v.baseCount.push(0);
        v.newCount.push(0);
        v.width.push(0);
        v.depth.push(v.depth[p] + 1);
        v.children.push([]);
        v.children[p].push(c);
        childMap.set(key, c);
      }
      return c;
    }
    // Map each sample's trie node to a view node; every node of the path is
    // memoized so shared prefixes are mapped once.
    const memo = new Int32Array(NNODES).fill(-1);
    memo[0] = 0;
    const chain = [];
    for (let s = 0; s < NS; s++) {
      let m = SM.node[s];
      chain.length = 0;
      while (memo[m] < 0) {
        chain.push(m);
        m = TP[m];
      }
      let mapped = memo[m];
      for (let i = chain.length - 1; i >= 0; i--) {
        const x = chain[i];
        if (!hidden[TF[x]]) mapped = child(mapped, TF[x]);
        memo[x] = mapped;
      }
      v.base[mapped] += SM.base_size[s];
      v.news[mapped] += SM.new_size[s];
      v.baseCount[mapped] += SM.base_count[s];
      v.newCount[mapped] += SM.new_count[s];
    }
    // Own values -> totals (parents precede children).
    v.selfBase = v.base.slice();
    v.selfNew = v.news.slice();
    for (let x = v.parent.length - 1; x > 0; x--) {
      const p = v.parent[x];
      v.base[p] += v.base[x];
      v.news[p] += v.news[x];
      v.baseCount[p] += v.baseCount[x];
      v.newCount[p] += v.newCount[x];
    }
    // Widths: NEW's or BASE's totals, or per frame the larger of its own two
    // sizes plus its children's widths (the larger of two totals would not
    // hold the children side by side).
    let maxAbs = 0;
    for (let x = v.parent.length - 1; x >= 0; x--) {
      if (state.width === "base") v.width[x] = v.base[x];
      else if (state.width === "new") v.width[x] = v.news[x];
      else {
        v.width[x] += Math.max(v.selfBase[x], v.selfNew[x]);
        if (x > 0) v.width[v.parent[x]] += v.width[x];
      }
      if (x > 0) maxAbs = Math.max(maxAbs, Math.abs(v.news[x] - v.base[x]));
    }
    v.maxAbs = maxAbs;
    for (const ch of v.children) {
      if (ch.length > 1) ch.sort((a, b) => v.width[b] - v.width[a] || a - b);
    }
    V = v;
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

  // --- Labels and colours ---------------------------------------------------
  function funcName(f) {
    return f < 0 ? "<root>" : S[FR.func[f]];
  }

  function location(f) {
    if (f < 0) return "";
    const file = S[FR.file[f]];
    const line = FR.line[f];
    const baseLine = FR.base_line[f];
    if (line < 0) return file + ":" + baseLine + " (only in BASE)";
    if (baseLine < 0) return file + ":" + line + " (only in NEW)";
    if (baseLine !== line) return file + ":" + line + " (BASE line " + baseLine + ")";
    return file + ":" + line;
  }

  function delta(node) {
    return V.news[node] - V.base[node];
  }

  function label(node) {
    const d = delta(node);
    const text = funcName(V.frame[node]);
    return d === 0 ? text : text + " (" + signedBytes(d) + ")";
  }

  function nodeColor(node) {
    const d = delta(node);
    if (d === 0 || V.maxAbs === 0) return "#d8dadd";
    const t = Math.sqrt(Math.abs(d) / V.maxAbs);
    const light = Math.round(90 - 40 * t);
    return d > 0 ? "hsl(356,72%," + light + "%)" : "hsl(212,80%," + light + "%)";
  }

  // --- Search ----------------------------------------------------------------
  let matchFrame = null;

  function computeMatches() {
    const term = state.search.trim().toLowerCase();
    if (!term) {
      matchFrame = null;
      return;
    }
    matchFrame = new Uint8Array(NFR);
    for (let f = 0; f < NFR; f++) {
      if (
        S[FR.func[f]].toLowerCase().includes(term) ||
        S[FR.file[f]].toLowerCase().includes(term)
      ) {
        matchFrame[f] = 1;
      }
    }
  }

  function isMatch(node) {
    const f = V.frame[node];
    return matchFrame !== null && f >= 0 && matchFrame[f] === 1;
  }

  // Change under matching nodes, nested matches counted once.
  function matchedDelta() {
    const n = V.parent.length;
    const inside = new Uint8Array(n);
    let total = 0;
    let nodes = 0;
    for (let x = 1; x < n; x++) {
      const p = V.parent[x];
      const m = isMatch(x);
      if (m) nodes++;
      if (m && !inside[p]) total += delta(x);
      inside[x] = inside[p] || m ? 1 : 0;
    }
    return { total, nodes };
  }

  // --- Layout and drawing ----------------------------------------------------
  // A rect with rest[i] = k > 0 stands for k children too narrow to draw.
  let rects = { node: [], x: [], w: [], row: [], rest: [] };
  let rows = [];

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
    const total = V.width[zoomNode];
    if (total <= 0) {
      add(zoomNode, 0, width, row);
      return;
    }
    const scale = width / total;
    const stack = [[zoomNode, 0, width, row, 0]];
    while (stack.length) {
      const [n, x, w, r, k] = stack.pop();
      add(n, x, w, r, k);
      if (k > 0 || r + 1 >= MAX_ROWS) continue;
      const ch = V.children[n];
      const drawn = [];
      let cx = x;
      let i = 0;
      for (; i < ch.length; i++) {
        const cw = V.width[ch[i]] * scale;
        if (cw < MIN_WIDTH) break; // sorted: the rest are narrower
        drawn.push([ch[i], cx, cw, r + 1, 0]);
        cx += cw;
      }
      let restWidth = 0;
      for (let j = i; j < ch.length; j++) restWidth += V.width[ch[j]] * scale;
      if (restWidth >= 1) stack.push([n, cx, restWidth, r + 1, ch.length - i]);
      for (let j = drawn.length - 1; j >= 0; j--) stack.push(drawn[j]);
    }
  }

  function draw() {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(100, flame.parentElement.clientWidth);
    layout(width);
    const height = rows.length * ROW;
    flame.style.height = height + "px";
    flame.width = Math.round(width * dpr);
    flame.height = Math.round(height * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
    ctx.textBaseline = "middle";
    const charW = ctx.measureText("m").width || 7;
    const zoomRow = V.depth[zoomNode];
    let drawn = 0;
    let matches = 0;
    for (let i = 0; i < rects.node.length; i++) {
      const n = rects.node[i];
      const x = rects.x[i];
      const w = rects.w[i];
      const y = rects.row[i] * ROW;
      if (rects.rest[i] > 0) {
        ctx.globalAlpha = 1;
        ctx.fillStyle = "#eceef0";
        ctx.fillRect(x, y, Math.max(w - 0.5, 0.5), ROW - 1);
        continue;
      }
      drawn++;
      const matched = isMatch(n);
      if (matched) matches++;
      ctx.globalAlpha = rects.row[i] < zoomRow ? 0.55 : 1;
      ctx.fillStyle = nodeColor(n);
      ctx.fillRect(x, y, Math.max(w - 0.5, 0.5), ROW - 1);
      if (matched) {
        ctx.strokeStyle = "#c026d3";
        ctx.lineWidth = 2;
        ctx.strokeRect(x + 1, y + 1, Math.max(w - 2.5, 0.5), ROW - 3);
      }
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
    body.totalBase = String(V.base[0]);
    body.totalNew = String(V.news[0]);
    body.zoom = zoomNode === 0 ? "" : label(zoomNode);
    body.zoomDelta = String(delta(zoomNode));
    body.matches = String(matches);
    $("reset-zoom").disabled = zoomNode === 0;
    const crumbs = [];
    for (let x = zoomNode; x >= 0; x = V.parent[x]) crumbs.push(funcName(V.frame[x]));
    $("breadcrumb").textContent = zoomNode === 0 ? "" : crumbs.reverse().join(" \u203a ");
    const result = $("search-result");
    if (matchFrame === null) {
      result.textContent = "";
      body.matchedDelta = "0";
    } else {
      const m = matchedDelta();
      const frames = m.nodes === 1 ? " frame" : " frames";
      result.textContent = "Matched " + m.nodes + frames + ", change " + signedBytes(m.total);
      body.matchedDelta = String(m.total);
    }
  }

  function rectAt(px, py) {
    return memray.rectAt(rects, rows, ROW, px, py);
  }

  // --- Tooltips --------------------------------------------------------------
  function showTooltip(ev, func, loc, src, pairs) {
    memray.showTooltip(tooltip, ev, func, loc, src, pairs);
  }

  function hideTooltip() {
    tooltip.hidden = true;
  }

  function percentChange(base, now) {
    if (base === 0) return now === 0 ? "" : " (new)";
    return " (" + (now >= base ? "+" : "") + ((100 * (now - base)) / base).toFixed(1) + "%)";
  }

  function nodeTooltip(ev, n) {
    const f = V.frame[n];
    const pairs = [
      ["BASE size", memray.formatBytes(V.base[n])],
      ["NEW size", memray.formatBytes(V.news[n])],
      ["Change", signedBytes(delta(n)) + percentChange(V.base[n], V.news[n])],
      ["Own change", signedBytes(V.selfNew[n] - V.selfBase[n])],
      ["BASE allocations", memray.formatCount(V.baseCount[n])],
      ["NEW allocations", memray.formatCount(V.newCount[n])],
      ["Change in allocations", signedCount(V.newCount[n] - V.baseCount[n])],
    ];
    const src = f >= 0 ? S[FR.src[f]] : "";
    showTooltip(ev, funcName(f), location(f), src, pairs);
  }

  function restTooltip(ev, i) {
    const n = rects.node[i];
    const ch = V.children[n];
    const k = rects.rest[i];
    let base = 0;
    let now = 0;
    for (let j = ch.length - k; j < ch.length; j++) {
      base += V.base[ch[j]];
      now += V.news[ch[j]];
    }
    showTooltip(ev, k + " more frames called by " + funcName(V.frame[n]), "too narrow to draw: click to zoom in", "", [
      ["BASE size", memray.formatBytes(base)],
      ["NEW size", memray.formatBytes(now)],
      ["Change", signedBytes(now - base)],
    ]);
  }

  // --- Location table ----------------------------------------------------------
  function fillTable() {
    const tbody = document.querySelector("#rows tbody");
    const frag = document.createDocumentFragment();
    for (const r of D.rows) {
      const tr = document.createElement("tr");
      tr.appendChild(memray.el("td", r.label, "loc"));
      const cells = [
        [memray.formatBytes(r.base_bytes), 0],
        [memray.formatBytes(r.new_bytes), 0],
        [signedBytes(r.delta_bytes), r.delta_bytes],
        [memray.formatCount(r.base_count), 0],
        [memray.formatCount(r.new_count), 0],
        [signedCount(r.delta_count), r.delta_count],
      ];
      for (const [text, d] of cells) {
        tr.appendChild(memray.el("td", text, "num" + (d > 0 ? " grow" : d < 0 ? " shrink" : "")));
      }
      frag.appendChild(tr);
    }
    tbody.appendChild(frag);
    $("more-rows").textContent =
      D.more_rows > 0 ? D.more_rows + " more changed locations are not listed" : "";
    document.body.dataset.rows = String(D.rows.length);
  }

  // --- Wiring --------------------------------------------------------------------
  function refresh() {
    buildView();
    draw();
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
  search.addEventListener(
    "input",
    memray.debounce(() => {
      state.search = search.value;
      computeMatches();
      draw();
    }, 120)
  );
  $("width").addEventListener("change", (ev) => {
    state.width = ev.target.value;
    refresh();
  });
  $("hide-import").addEventListener("change", (ev) => {
    state.hideImport = ev.target.checked;
    refresh();
  });
  $("hide-uninteresting").addEventListener("change", (ev) => {
    state.hideUninteresting = ev.target.checked;
    refresh();
  });
  window.addEventListener(
    "resize",
    memray.debounce(() => draw(), 100)
  );

  // For tests and for scripting the page from the console.
  window.memrayDiff = {
    state,
    view: () => V,
    zoomTo,
    label,
    search(term) {
      search.value = term;
      state.search = term;
      computeMatches();
      draw();
    },
    setWidth(mode) {
      $("width").value = mode;
      state.width = mode;
      refresh();
    },
    // Page coordinates of the centre of the first drawn node whose label
    // starts with prefix, or null.
    locate(prefix) {
      const r = flame.getBoundingClientRect();
      for (let i = 0; i < rects.node.length; i++) {
        if (rects.rest[i] === 0 && label(rects.node[i]).startsWith(prefix)) {
          return {
            clientX: r.left + rects.x[i] + rects.w[i] / 2,
            clientY: r.top + rects.row[i] * ROW + ROW / 2,
            width: rects.w[i],
            node: rects.node[i],
          };
        }
      }
      return null;
    },
  };

  fillTable();
  refresh();
  document.body.dataset.ready = "1";
})();
