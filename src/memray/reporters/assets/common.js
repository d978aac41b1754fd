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

  return { loadData, formatBytes, formatCount, debounce, el };
})();
