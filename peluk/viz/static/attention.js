/* peluk attention views: head view, model view, heat map. Vanilla JS, no external libraries,
 * no network: the notebook output, the standalone HTML file and the web UI all inline this file.
 *
 *   PelukAttention.render(element, data)   // data: AttentionView.to_dict() (peluk-attention/1)
 *   PelukAttention.render(element, data, {lang: "id"})   // a page's own language (default: the browser's)
 *
 * Attention tensors arrive as base64 little-endian float16/float32 with their shape
 * (layers, heads, T, S). Everything is drawn on <canvas>, so 512+ tokens stay usable: a token
 * range filter and a zoom (row height) pick what is drawn, and weak lines are skipped.
 */
(function (global) {
  "use strict";

  var STRINGS = {
    en: {
      head: "Head view", model: "Model view", heat: "Heat map", layer: "Layer", attention: "Attention",
      encoder: "Encoder self-attention", decoder: "Decoder self-attention", cross: "Cross-attention (decoder → encoder)",
      heads: "Heads", all: "all", none: "none", mean: "Mean over heads", from: "From token", to: "to",
      filter: "Show tokens", zoom: "Zoom", threshold: "Hide below", language: "Language",
      hint: "Hover a token to see where it looks; click a head colour to toggle it; double-click to show only that head.",
      modelHint: "Each thumbnail is one layer × head (rows: layers, columns: heads). Click one to open it in the head view.",
      generated: "generated", query: "queries", key: "keys", weight: "weight", tokens: "tokens",
      neuron: "Neuron view", qvec: "query q", kvec: "key k", product: "q × k", dot: "q · k",
      neuronHint: "Click a query token on the left: each row shows a key vector k, the element-wise product q × k (blue positive, orange negative), their scaled dot product and the attention weight."
    },
    id: {
      head: "Tampilan head", model: "Tampilan model", heat: "Peta panas", layer: "Lapisan", attention: "Atensi",
      encoder: "Self-attention encoder", decoder: "Self-attention decoder", cross: "Cross-attention (decoder → encoder)",
      heads: "Head", all: "semua", none: "tidak ada", mean: "Rata-rata semua head", from: "Dari token", to: "sampai",
      filter: "Tampilkan token", zoom: "Perbesar", threshold: "Sembunyikan di bawah", language: "Bahasa",
      hint: "Arahkan kursor ke sebuah token untuk melihat ke mana ia memperhatikan; klik warna head untuk menyalakan/mematikannya; klik ganda untuk hanya menampilkan head itu.",
      modelHint: "Setiap gambar kecil adalah satu lapisan × head (baris: lapisan, kolom: head). Klik untuk membukanya di tampilan head.",
      generated: "hasil generate", query: "query", key: "key", weight: "bobot", tokens: "token",
      neuron: "Tampilan neuron", qvec: "query q", kvec: "key k", product: "q × k", dot: "q · k",
      neuronHint: "Klik sebuah token query di kiri: setiap baris menampilkan vektor key k, hasil kali per elemen q × k (biru positif, oranye negatif), hasil kali titiknya yang diskalakan, dan bobot atensinya."
    }
  };

  function pickLanguage() {
    var langs = (global.navigator && (global.navigator.languages || [global.navigator.language])) || [];
    for (var i = 0; i < langs.length; i++) {
      var l = String(langs[i] || "").toLowerCase();
      if (l.indexOf("id") === 0 || l.indexOf("in") === 0 || l.indexOf("ms") === 0) return "id";
      if (l.indexOf("en") === 0) return "en";
    }
    return "en";
  }

  // ---- data ------------------------------------------------------------------------------
  function halfToFloat(h) {
    var s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
    if (e === 31) return f ? NaN : s * Infinity;
    return s * Math.pow(2, e - 15) * (1 + f / 1024);
  }

  function base64Bytes(text) {
    var bin = global.atob(text), n = bin.length, bytes = new Uint8Array(n);
    for (var i = 0; i < n; i++) bytes[i] = bin.charCodeAt(i);
    return bytes;
  }

  // deflated (zlib) bytes, undone by the browser itself (Compression Streams API)
  function inflate(bytes) {
    var DS = global.DecompressionStream, R = global.Response, B = global.Blob;
    var stream = new B([bytes]).stream().pipeThrough(new DS("deflate"));
    return new R(stream).arrayBuffer().then(function (buf) { return new Uint8Array(buf); });
  }

  function toFloats(t, bytes) {
    var out, k;
    if (t.dtype === "float32") {
      out = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    } else if (t.dtype === "uint8") {  // round(255 * sqrt(p))
      out = new Float32Array(bytes.length);
      for (k = 0; k < bytes.length; k++) { var q = bytes[k] / 255; out[k] = q * q; }
    } else {
      var u16 = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2), table = new Float32Array(65536);
      out = new Float32Array(u16.length);
      for (var j = 0; j < 65536; j++) table[j] = halfToFloat(j);
      for (k = 0; k < u16.length; k++) out[k] = table[u16[k]];
    }
    var sh = t.shape;
    return { data: out, L: sh[0], H: sh[1], T: sh[2], S: sh[3] };
  }

  // -> Promise of {data, L, H, T, S}
  function decodeTensor(t) {
    var bytes = base64Bytes(t.data);
    if (t.compression === "deflate") return inflate(bytes).then(function (b) { return toFloats(t, b); });
    return Promise.resolve(toFloats(t, bytes));
  }

  // value of (layer, head, t, s); head < 0 = mean over heads
  function at(a, l, h, t, s) {
    if (h >= 0) return a.data[((l * a.H + h) * a.T + t) * a.S + s];
    var sum = 0;
    for (var k = 0; k < a.H; k++) sum += a.data[((l * a.H + k) * a.T + t) * a.S + s];
    return sum / a.H;
  }

  function headColor(h, H, alpha) {
    var hue = Math.round((360 * h) / Math.max(H, 1));
    return "hsla(" + hue + ",75%,45%," + (alpha === undefined ? 1 : alpha) + ")";
  }

  function el(tag, attrs, children) {
    var e = global.document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "style") e.style.cssText = attrs[k];
      else if (k === "text") e.textContent = attrs[k];
      else if (k.indexOf("on") === 0) e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  function cleanToken(t) { return String(t).replace(/^Ġ|^▁/, "·").replace(/Ċ/g, "\\n"); }

  // ---- the widget ------------------------------------------------------------------------
  // -> Promise of the widget ({state, update}); tensors are decoded (and inflated) first
  function render(root, data, options) {
    if (typeof root === "string") root = global.document.getElementById(root);
    var kinds = Object.keys(data.attentions), nk = Object.keys(data.neurons || {});
    root.textContent = "…";
    var parts = kinds.map(function (k) { return decodeTensor(data.attentions[k]); });
    nk.forEach(function (k) { parts.push(decodeTensor(data.neurons[k].queries), decodeTensor(data.neurons[k].keys)); });
    return Promise.all(parts).then(function (list) {
      var tensors = {}, neurons = {};
      kinds.forEach(function (k, i) { tensors[k] = list[i]; });
      nk.forEach(function (k, i) {
        neurons[k] = { q: list[kinds.length + 2 * i], k: list[kinds.length + 2 * i + 1], scale: data.neurons[k].scale };
      });
      return build(root, data, kinds, tensors, options || {}, neurons);
    }).catch(function (e) { root.textContent = "peluk attention view: " + e; throw e; });
  }

  function build(root, data, kinds, tensors, options, neurons) {
    var st = {
      lang: STRINGS[options.lang] ? options.lang : pickLanguage(),
      view: "head", kind: kinds[0], layer: 0, heads: null, mean: false,
      from: 0, to: 0, zoom: 18, threshold: 0.01, hover: -1, hoverSide: null, query: 0
    };
    neurons = neurons || {};
    function T() { return STRINGS[st.lang]; }
    function tens() { return tensors[st.kind]; }
    function qTokens() { return data.tokens[data.sides[st.kind][0]]; }
    function kTokens() { return data.tokens[data.sides[st.kind][1]]; }
    function resetHeads() {
      var a = tens(); st.heads = []; for (var h = 0; h < a.H; h++) st.heads.push(true);
      st.layer = Math.min(st.layer, a.L - 1);
      var n = Math.max(a.T, a.S); st.from = 0; st.to = Math.min(n, 256);
    }
    resetHeads();

    root.innerHTML = "";
    root.classList.add("peluk-attention");
    var bar = el("div", { class: "pa-bar" }), headBar = el("div", { class: "pa-heads" }),
      hint = el("div", { class: "pa-hint" }), stage = el("div", { class: "pa-stage" }),
      tip = el("div", { class: "pa-tip" });
    root.appendChild(el("style", { text: CSS }));
    [bar, headBar, hint, stage, tip].forEach(function (e) { root.appendChild(e); });

    function select(options, value, onchange) {
      var s = el("select", { onchange: function () { onchange(s.value); } });
      options.forEach(function (o) {
        var opt = el("option", { value: o[0], text: o[1] });
        if (String(o[0]) === String(value)) opt.selected = true;
        s.appendChild(opt);
      });
      return s;
    }
    function label(text, input) { return el("label", {}, [el("span", { text: text + " " }), input]); }
    function number(value, min, max, onchange) {
      var i = el("input", { type: "number", value: value, min: min, max: max, style: "width:4.5em",
        onchange: function () { onchange(parseInt(i.value, 10) || 0); } });
      return i;
    }

    function buildBar() {
      var a = tens(), t = T();
      bar.innerHTML = "";
      var tabs = el("span", { class: "pa-tabs" });
      var views = [["head", t.head], ["model", t.model], ["heat", t.heat]];
      if (neurons[st.kind]) views.push(["neuron", t.neuron]);
      else if (st.view === "neuron") st.view = "head";
      views.forEach(function (v) {
        tabs.appendChild(el("button", { class: st.view === v[0] ? "on" : "", text: v[1], "data-view": v[0],
          onclick: function () { st.view = v[0]; update(); } }));
      });
      bar.appendChild(tabs);
      if (kinds.length > 1) {
        bar.appendChild(label(t.attention, select(kinds.map(function (k) { return [k, t[k] || k]; }), st.kind,
          function (v) { st.kind = v; resetHeads(); update(); })));
      }
      var layers = []; for (var l = 0; l < a.L; l++) layers.push([l, String(l)]);
      if (st.view !== "model") {
        bar.appendChild(label(t.layer, select(layers, st.layer, function (v) { st.layer = +v; update(); })));
        var n = Math.max(a.T, a.S);
        bar.appendChild(label(t.filter, number(st.from, 0, n - 1, function (v) { st.from = Math.max(0, Math.min(v, n - 1)); update(); })));
        bar.appendChild(label(t.to, number(st.to, 1, n, function (v) { st.to = Math.max(st.from + 1, Math.min(v, n)); update(); })));
        var z = el("input", { type: "range", min: 4, max: 40, value: st.zoom,
          oninput: function () { st.zoom = +z.value; draw(); } });
        bar.appendChild(label(t.zoom, z));
      }
      if (st.view === "head") {
        var th = el("input", { type: "range", min: 0, max: 0.5, step: 0.005, value: st.threshold,
          oninput: function () { st.threshold = +th.value; draw(); } });
        bar.appendChild(label(t.threshold, th));
      }
      var mean = el("input", { type: "checkbox", onchange: function () { st.mean = mean.checked; update(); } });
      mean.checked = st.mean;
      if (st.view !== "model") bar.appendChild(label(t.mean, mean));
      bar.appendChild(label(t.language, select([["en", "English"], ["id", "Bahasa Indonesia"]], st.lang,
        function (v) { st.lang = v; update(); })));
    }

    function buildHeads() {
      var a = tens(), t = T();
      headBar.innerHTML = "";
      if (st.view === "model" || st.mean) return;
      headBar.appendChild(el("span", { text: t.heads + ": " }));
      var swatches = [];
      // swatches are restyled in place (not rebuilt), so a double click lands on the same element
      function restyle() {
        swatches.forEach(function (sw, h) {
          sw.className = "pa-swatch" + (st.heads[h] ? " on" : "");
          sw.style.background = headColor(h, a.H, st.heads[h] ? 1 : 0.15);
        });
        draw();
      }
      for (var h = 0; h < a.H; h++) (function (h) {
        var sw = el("span", {
          class: "pa-swatch", title: "head " + h, "data-head": h, text: String(h),
          onclick: function () { st.heads[h] = !st.heads[h]; restyle(); },
          ondblclick: function () { st.heads = st.heads.map(function (_, i) { return i === h; }); restyle(); }
        });
        swatches.push(sw);
        headBar.appendChild(sw);
      })(h);
      swatches.forEach(function (sw, h) {
        sw.className = "pa-swatch" + (st.heads[h] ? " on" : "");
        sw.style.background = headColor(h, a.H, st.heads[h] ? 1 : 0.15);
      });
      headBar.appendChild(el("button", { text: t.all, onclick: function () { st.heads = st.heads.map(function () { return true; }); restyle(); } }));
      headBar.appendChild(el("button", { text: t.none, onclick: function () { st.heads = st.heads.map(function () { return false; }); restyle(); } }));
    }

    function canvas(w, h) {
      // browsers cap canvas sides (~16-32k px): lower the pixel ratio for very long inputs
      var c = el("canvas"), r = Math.min(global.devicePixelRatio || 1, 16000 / Math.max(w, h, 1));
      c.width = Math.ceil(w * r); c.height = Math.ceil(h * r);
      c.style.width = w + "px"; c.style.height = h + "px";
      var ctx = c.getContext("2d"); ctx.scale(r, r);
      return { c: c, ctx: ctx };
    }

    function visibleRange(n) { return [Math.min(st.from, n), Math.min(st.to, n)]; }

    // head view: queries on the left, keys on the right, one line per (query, key, head)
    function drawHead() {
      var a = tens(), qs = qTokens(), ks = kTokens(), rq = visibleRange(a.T), rk = visibleRange(a.S);
      var rows = Math.max(rq[1] - rq[0], rk[1] - rk[0]), rh = st.zoom, font = Math.max(6, Math.min(13, rh - 3));
      var textW = 120, gap = 220, W = textW * 2 + gap, Hpx = rows * rh + 10;
      var cv = canvas(W, Hpx), ctx = cv.ctx;
      var heads = [];
      if (st.mean) heads = [-1]; else st.heads.forEach(function (on, h) { if (on) heads.push(h); });
      var x0 = textW + 4, x1 = textW + gap - 4;
      function yq(t) { return 5 + (t - rq[0]) * rh + rh / 2; }
      function yk(s) { return 5 + (s - rk[0]) * rh + rh / 2; }
      ctx.lineWidth = Math.max(1, rh / 8);
      for (var hi = 0; hi < heads.length; hi++) {
        var h = heads[hi];
        for (var t = rq[0]; t < rq[1]; t++) {
          if (st.hover >= 0 && st.hoverSide === "q" && st.hover !== t) continue;
          for (var s = rk[0]; s < rk[1]; s++) {
            if (st.hover >= 0 && st.hoverSide === "k" && st.hover !== s) continue;
            var w = at(a, st.layer, h, t, s);
            if (w < st.threshold) continue;
            ctx.strokeStyle = h < 0 ? "rgba(40,60,160," + Math.min(1, w) + ")" : headColor(h, a.H, Math.min(1, w / Math.sqrt(heads.length)));
            ctx.beginPath(); ctx.moveTo(x0, yq(t)); ctx.lineTo(x1, yk(s)); ctx.stroke();
          }
        }
      }
      ctx.font = font + "px sans-serif"; ctx.textBaseline = "middle";
      var gen = data.prompt_length;
      function token(x, y, txt, align, bold, generated) {
        ctx.textAlign = align; ctx.fillStyle = generated ? "#a33" : "#222";
        ctx.font = (bold ? "bold " : "") + font + "px sans-serif";
        ctx.fillText(txt.length > 18 ? txt.slice(0, 17) + "…" : txt, x, y);
      }
      for (var t2 = rq[0]; t2 < rq[1]; t2++)
        token(textW, yq(t2), cleanToken(qs[t2]), "right", st.hoverSide === "q" && st.hover === t2,
          gen !== null && gen !== undefined && data.sides[st.kind][0] === "target" && t2 >= gen);
      for (var s2 = rk[0]; s2 < rk[1]; s2++)
        token(textW + gap, yk(s2), cleanToken(ks[s2]), "left", st.hoverSide === "k" && st.hover === s2,
          gen !== null && gen !== undefined && data.sides[st.kind][1] === "target" && s2 >= gen);
      cv.c.addEventListener("mousemove", function (ev) {
        var r = cv.c.getBoundingClientRect(), x = ev.clientX - r.left, y = ev.clientY - r.top;
        var side = x < textW + gap / 2 ? "q" : "k", base = side === "q" ? rq : rk;
        var idx = base[0] + Math.floor((y - 5) / rh);
        if (idx < base[0] || idx >= base[1]) idx = -1;
        if (idx !== st.hover || side !== st.hoverSide) { st.hover = idx; st.hoverSide = side; draw(); }
      });
      cv.c.addEventListener("mouseleave", function () { st.hover = -1; draw(); });
      cv.c.setAttribute("data-role", "head-view");
      return cv.c;
    }

    // matrix image of one (layer, head) over the visible range, darker = more attention
    function matrixCanvas(l, h, size, rq, rk) {
      var a = tens(), nT = rq[1] - rq[0], nS = rk[1] - rk[0];
      var cw = Math.max(1, Math.min(size, nS * size)), ch = Math.max(1, Math.min(size, nT * size));
      var stepT = nT / ch, stepS = nS / cw;
      var c = el("canvas"); c.width = cw; c.height = ch;
      var ctx = c.getContext("2d"), img = ctx.createImageData(cw, ch);
      for (var y = 0; y < ch; y++) {
        var t = rq[0] + Math.floor(y * stepT);
        for (var x = 0; x < cw; x++) {
          var s0 = rk[0] + Math.floor(x * stepS), s1 = Math.max(s0 + 1, rk[0] + Math.floor((x + 1) * stepS)), m = 0;
          for (var s = s0; s < s1; s++) { var v = at(a, l, h, t, s); if (v > m) m = v; }  // max-pool keeps peaks
          var v8 = 255 - Math.round(255 * Math.min(1, Math.sqrt(m))), o = (y * cw + x) * 4;
          img.data[o] = v8; img.data[o + 1] = Math.round(v8 * 0.95 + 12); img.data[o + 2] = 255; img.data[o + 3] = 255;
        }
      }
      ctx.putImageData(img, 0, 0);
      c.style.imageRendering = "pixelated";
      return c;
    }

    function drawModel() {
      var a = tens(), t = T(), box = el("div", { class: "pa-grid", "data-role": "model-view" });
      var n = Math.max(a.T, a.S), size = n > 256 ? 96 : 72, rq = [0, a.T], rk = [0, a.S];
      box.style.gridTemplateColumns = "auto repeat(" + a.H + ", " + size + "px)";
      box.appendChild(el("div"));
      for (var h = 0; h < a.H; h++) box.appendChild(el("div", { class: "pa-axis", text: "H" + h, style: "color:" + headColor(h, a.H) }));
      for (var l = 0; l < a.L; l++) {
        box.appendChild(el("div", { class: "pa-axis", text: "L" + l }));
        for (var h2 = 0; h2 < a.H; h2++) (function (l, h) {
          var c = matrixCanvas(l, h, size, rq, rk);
          c.style.width = size + "px"; c.style.height = size + "px";
          var cell = el("div", { class: "pa-thumb", title: t.layer + " " + l + ", head " + h, "data-layer": l, "data-head": h,
            onclick: function () {
              st.layer = l; st.mean = false; st.heads = st.heads.map(function (_, i) { return i === h; });
              st.view = "head"; update();
            } }, [c]);
          box.appendChild(cell);
        })(l, h2);
      }
      return box;
    }

    function drawHeat() {
      var a = tens(), qs = qTokens(), ks = kTokens(), rq = visibleRange(a.T), rk = visibleRange(a.S);
      var heads = st.mean ? [-1] : [];
      if (!st.mean) st.heads.forEach(function (on, h) { if (on) heads.push(h); });
      if (!heads.length) heads = [-1];
      var h = heads.length === 1 ? heads[0] : -1;  // several heads selected: their mean is shown
      var nT = rq[1] - rq[0], nS = rk[1] - rk[0], cell = st.zoom, lab = 110, font = Math.max(6, Math.min(12, cell - 2));
      var W = lab + nS * cell + 10, Hpx = lab + nT * cell + 10, cv = canvas(W, Hpx), ctx = cv.ctx;
      for (var t = rq[0]; t < rq[1]; t++) for (var s = rk[0]; s < rk[1]; s++) {
        var v = 0;
        if (h >= 0 || heads.length === 1) v = at(a, st.layer, h, t, s);
        else { for (var i = 0; i < heads.length; i++) v += at(a, st.layer, heads[i], t, s); v /= heads.length; }
        var g = Math.round(255 * (1 - Math.min(1, v)));
        ctx.fillStyle = "rgb(" + Math.round(g * 0.9) + "," + Math.round(g * 0.95) + "," + (150 + Math.round(g * 0.41)) + ")";
        ctx.fillRect(lab + (s - rk[0]) * cell, lab + (t - rq[0]) * cell, cell, cell);
      }
      ctx.fillStyle = "#222"; ctx.font = font + "px sans-serif";
      if (cell >= 6) {
        ctx.textAlign = "right"; ctx.textBaseline = "middle";
        for (var t2 = rq[0]; t2 < rq[1]; t2++) ctx.fillText(cleanToken(qs[t2]).slice(0, 16), lab - 4, lab + (t2 - rq[0] + 0.5) * cell);
        for (var s2 = rk[0]; s2 < rk[1]; s2++) {
          ctx.save(); ctx.translate(lab + (s2 - rk[0] + 0.5) * cell, lab - 4); ctx.rotate(-Math.PI / 2);
          ctx.textAlign = "left"; ctx.fillText(cleanToken(ks[s2]).slice(0, 16), 0, 0); ctx.restore();
        }
      }
      cv.c.addEventListener("mousemove", function (ev) {
        var r = cv.c.getBoundingClientRect(), x = ev.clientX - r.left - lab, y = ev.clientY - r.top - lab;
        var s = rk[0] + Math.floor(x / cell), t = rq[0] + Math.floor(y / cell);
        if (x < 0 || y < 0 || s >= rk[1] || t >= rq[1]) { tip.style.display = "none"; return; }
        tip.textContent = cleanToken(qs[t]) + " → " + cleanToken(ks[s]) + ": " + at(a, st.layer, h, t, s).toFixed(4);
        tip.style.display = "block"; tip.style.left = (ev.clientX + 12) + "px"; tip.style.top = (ev.clientY + 12) + "px";
      });
      cv.c.addEventListener("mouseleave", function () { tip.style.display = "none"; });
      cv.c.setAttribute("data-role", "heat-map");
      return cv.c;
    }

    // neuron view (BertViz's): one head, one query token; per key its vector k, q × k element-wise,
    // the scaled dot product and the attention weight
    function drawNeuron() {
      var n = neurons[st.kind], a = tens(), t = T(), qs = qTokens(), ks = kTokens(), rk = visibleRange(a.S);
      var h = 0;
      if (!st.mean) for (var i = 0; i < st.heads.length; i++) if (st.heads[i]) { h = i; break; }
      var D = n.q.S, query = Math.min(st.query, a.T - 1);
      function vec(tn, l, hh, row) { var o = ((l * tn.H + hh) * tn.T + row) * tn.S; return tn.data.subarray(o, o + tn.S); }
      var q = vec(n.q, st.layer, h, query), rows = [], maxAbs = 1e-9, maxProd = 1e-9;
      for (var s = rk[0]; s < rk[1]; s++) {
        var k = vec(n.k, st.layer, h, s), prod = new Float32Array(D), dot = 0;
        for (var d = 0; d < D; d++) {
          prod[d] = q[d] * k[d]; dot += prod[d];
          maxAbs = Math.max(maxAbs, Math.abs(k[d])); maxProd = Math.max(maxProd, Math.abs(prod[d]));
        }
        rows.push({ s: s, k: k, prod: prod, dot: dot * n.scale, w: at(a, st.layer, h, query, s) });
      }
      for (var d2 = 0; d2 < D; d2++) maxAbs = Math.max(maxAbs, Math.abs(q[d2]));
      var box = el("div", { class: "pa-neuron", "data-role": "neuron-view", "data-query": query, "data-head": h });
      var list = el("div", { class: "pa-qlist" });
      for (var tq = 0; tq < a.T; tq++) (function (tq) {
        list.appendChild(el("div", { class: "pa-q" + (tq === query ? " on" : ""), "data-role": "neuron-query",
          "data-index": tq, text: cleanToken(qs[tq]), onclick: function () { st.query = tq; draw(); } }));
      })(tq);
      box.appendChild(list);
      var cell = Math.max(2, Math.min(8, Math.floor(360 / D))), rh = Math.max(12, st.zoom), lab = 110;
      var W = lab + 2 * D * cell + 24 + 170, Hpx = (rows.length + 2) * rh + 8, cv = canvas(W, Hpx), ctx = cv.ctx;
      function cells(x, y, v, m) {  // blue positive, orange negative, stronger = larger |v|
        for (var d = 0; d < v.length; d++) {
          var u = Math.max(-1, Math.min(1, v[d] / m)), g = Math.round(255 * (1 - Math.abs(u)));
          ctx.fillStyle = u >= 0 ? "rgb(" + g + "," + g + ",255)" : "rgb(255," + Math.round(150 + g * 0.41) + "," + g + ")";
          ctx.fillRect(x + d * cell, y + 1, cell, rh - 2);
        }
      }
      ctx.font = Math.min(12, rh - 2) + "px sans-serif"; ctx.textBaseline = "middle"; ctx.fillStyle = "#222";
      var xk = lab, xp = lab + D * cell + 12, xd = xp + D * cell + 12;
      ctx.textAlign = "left";
      ctx.fillText(t.kvec, xk, rh / 2); ctx.fillText(t.product, xp, rh / 2); ctx.fillText(t.dot + " / " + t.weight, xd, rh / 2);
      ctx.textAlign = "right"; ctx.fillText(t.qvec + ": " + cleanToken(qs[query]).slice(0, 10), lab - 4, rh * 1.5);
      cells(xk, rh, q, maxAbs);
      rows.forEach(function (r, i) {
        var y = (i + 2) * rh;
        ctx.fillStyle = "#222"; ctx.textAlign = "right"; ctx.fillText(cleanToken(ks[r.s]).slice(0, 16), lab - 4, y + rh / 2);
        cells(xk, y, r.k, maxAbs); cells(xp, y, r.prod, maxProd);
        ctx.fillStyle = "#222"; ctx.textAlign = "left"; ctx.fillText(r.dot.toFixed(2), xd, y + rh / 2);
        ctx.fillStyle = "rgba(40,60,160,0.8)"; ctx.fillRect(xd + 50, y + 2, Math.max(1, 110 * r.w), rh - 4);
      });
      cv.c.setAttribute("data-role", "neuron-canvas");
      box.appendChild(cv.c);
      return box;
    }

    function draw() {
      var top = stage.scrollTop, left = stage.scrollLeft;  // a redraw (hover, zoom) keeps the scroll position
      var v = st.view === "model" ? drawModel() : st.view === "heat" ? drawHeat() :
        st.view === "neuron" ? drawNeuron() : drawHead();
      stage.innerHTML = "";
      stage.appendChild(v);
      stage.scrollTop = top; stage.scrollLeft = left;
    }

    function update() {
      buildBar(); buildHeads();
      var t = T(), a = tens();
      hint.textContent = (st.view === "model" ? t.modelHint : st.view === "neuron" ? t.neuronHint : t.hint) +
        "  [" + (t[st.kind] || st.kind) + ", " +
        a.L + "×" + a.H + ", " + a.T + "×" + a.S + " " + t.tokens + "]";
      draw();
      root.setAttribute("data-view", st.view); root.setAttribute("data-layer", st.layer);
      root.setAttribute("data-lang", st.lang);
    }

    update();
    return { state: st, update: update, tensors: tensors };
  }

  var CSS = ".peluk-attention{font:13px sans-serif;color:#222;background:#fff;padding:6px}" +
    ".peluk-attention .pa-bar label{margin-right:10px;white-space:nowrap}" +
    ".peluk-attention .pa-bar,.peluk-attention .pa-heads{margin:4px 0;display:flex;flex-wrap:wrap;align-items:center;gap:4px}" +
    ".peluk-attention .pa-tabs button{border:1px solid #999;background:#f4f4f4;padding:3px 8px;cursor:pointer}" +
    ".peluk-attention .pa-tabs button.on{background:#335;color:#fff}" +
    ".peluk-attention .pa-swatch{display:inline-block;min-width:20px;padding:1px 3px;text-align:center;color:#fff;cursor:pointer;border-radius:3px;user-select:none}" +
    ".peluk-attention .pa-hint{color:#666;font-size:12px;margin:2px 0 6px}" +
    ".peluk-attention .pa-stage{overflow:auto;max-height:80vh;border:1px solid #eee}" +
    ".peluk-attention .pa-grid{display:grid;gap:3px;align-items:center;padding:4px}" +
    ".peluk-attention .pa-thumb{cursor:pointer;border:1px solid #ccc;line-height:0}" +
    ".peluk-attention .pa-thumb:hover{outline:2px solid #335}" +
    ".peluk-attention .pa-axis{font-size:11px;color:#555;text-align:center}" +
    ".peluk-attention .pa-neuron{display:flex;gap:10px;align-items:flex-start}" +
    ".peluk-attention .pa-qlist{max-height:70vh;overflow:auto;min-width:90px}" +
    ".peluk-attention .pa-q{cursor:pointer;padding:0 4px;white-space:nowrap}" +
    ".peluk-attention .pa-q.on{background:#335;color:#fff}" +
    ".peluk-attention .pa-tip{position:fixed;z-index:10;display:none;background:#333;color:#fff;padding:2px 6px;font-size:12px;border-radius:3px;pointer-events:none}";

  global.PelukAttention = { render: render, decodeTensor: decodeTensor, strings: STRINGS };
})(typeof window !== "undefined" ? window : this);
