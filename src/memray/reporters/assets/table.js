"use strict";
// The table page: sort, filter and page through the rows embedded by
// reporters/table.py. Cells are filled with textContent only.
(function () {
  const D = memray.loadData();
  const S = D.strings;
  const R = D.rows;
  const N = R.size.length;
  const $ = (id) => document.getElementById(id);
  const tbody = document.querySelector("#table tbody");
  const headers = Array.from(document.querySelectorAll("#table th"));

  const state = { sortKey: "size", sortDesc: true, search: "", page: 0, pageSize: 25 };
  let order = []; // row indices after filtering and sorting

  function text(key, i) {
    return S[R[key][i]];
  }

  function update() {
    const term = state.search.trim().toLowerCase();
    order = [];
    for (let i = 0; i < N; i++) {
      if (
        !term ||
        text("location", i).toLowerCase().includes(term) ||
        text("thread", i).toLowerCase().includes(term) ||
        text("allocator", i).toLowerCase().includes(term)
      ) {
        order.push(i);
      }
    }
    const key = state.sortKey;
    const numeric = key === "size" || key === "count";
    const sign = state.sortDesc ? -1 : 1;
    order.sort((a, b) => {
      let c;
      if (numeric) c = R[key][a] - R[key][b];
      else c = text(key, a) < text(key, b) ? -1 : text(key, a) > text(key, b) ? 1 : 0;
      return sign * c || a - b;
    });
    const pages = Math.max(1, Math.ceil(order.length / state.pageSize));
    state.page = Math.min(state.page, pages - 1);
    render(pages);
  }

  function render(pages) {
    const start = state.page * state.pageSize;
    const end = Math.min(order.length, start + state.pageSize);
    const frag = document.createDocumentFragment();
    for (let k = start; k < end; k++) {
      const i = order[k];
      const tr = document.createElement("tr");
      tr.appendChild(memray.el("td", text("thread", i)));
      const size = memray.el("td", memray.formatBytes(R.size[i]), "num");
      size.title = memray.formatCount(R.size[i]) + " bytes";
      tr.appendChild(size);
      tr.appendChild(memray.el("td", memray.formatCount(R.count[i]), "num"));
      tr.appendChild(memray.el("td", text("allocator", i)));
      tr.appendChild(memray.el("td", text("location", i), "loc"));
      frag.appendChild(tr);
    }
    tbody.textContent = "";
    tbody.appendChild(frag);
    $("page-info").textContent =
      order.length === 0
        ? "No matching rows"
        : "Rows " +
          memray.formatCount(start + 1) +
          "\u2013" +
          memray.formatCount(end) +
          " of " +
          memray.formatCount(order.length) +
          (order.length !== N ? " (filtered from " + memray.formatCount(N) + ")" : "") +
          ", page " +
          (state.page + 1) +
          " of " +
          pages;
    $("first").disabled = $("prev").disabled = state.page === 0;
    $("next").disabled = $("last").disabled = state.page >= pages - 1;
    for (const th of headers) {
      th.classList.toggle("sorted-asc", th.dataset.key === state.sortKey && !state.sortDesc);
      th.classList.toggle("sorted-desc", th.dataset.key === state.sortKey && state.sortDesc);
      th.setAttribute(
        "aria-sort",
        th.dataset.key !== state.sortKey ? "none" : state.sortDesc ? "descending" : "ascending"
      );
    }
    const body = document.body.dataset;
    body.rows = String(end - start);
    body.filtered = String(order.length);
    body.page = String(state.page);
    body.pages = String(pages);
    body.sort = state.sortKey + (state.sortDesc ? ":desc" : ":asc");
    body.ready = "1";
  }

  for (const th of headers) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      if (state.sortKey === key) state.sortDesc = !state.sortDesc;
      else {
        state.sortKey = key;
        state.sortDesc = key === "size" || key === "count";
      }
      update();
    });
  }
  const search = $("search");
  search.addEventListener(
    "input",
    memray.debounce(() => {
      state.search = search.value;
      state.page = 0;
      update();
    }, 120)
  );
  $("page-size").addEventListener("change", (ev) => {
    state.pageSize = parseInt(ev.target.value, 10);
    state.page = 0;
    update();
  });
  $("first").addEventListener("click", () => {
    state.page = 0;
    update();
  });
  $("prev").addEventListener("click", () => {
    state.page = Math.max(0, state.page - 1);
    update();
  });
  $("next").addEventListener("click", () => {
    state.page += 1;
    update();
  });
  $("last").addEventListener("click", () => {
    state.page = Number.MAX_SAFE_INTEGER;
    update();
  });

  window.memrayTable = {
    state,
    search(term) {
      search.value = term;
      state.search = term;
      state.page = 0;
      update();
    },
    visibleRows() {
      return Array.from(tbody.rows).map((tr) => Array.from(tr.cells).map((td) => td.textContent));
    },
  };
  update();
})();
