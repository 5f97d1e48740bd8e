// A minimal DOM + canvas stand-in so node can run peluk/viz/static/attention.js headlessly:
// enough to render every view, click elements and count canvas drawing calls.
"use strict";
const fs = require("fs");

class Ctx2D {
  constructor(counter) { this.n = counter; this.font = ""; }
  scale() {} save() {} restore() {} translate() {} rotate() {} beginPath() {} moveTo() {}
  lineTo() {} stroke() { this.n.lines++; } fillRect() { this.n.rects++; } fillText() { this.n.texts++; }
  createImageData(w, h) { return { data: new Uint8ClampedArray(w * h * 4) }; }
  putImageData() { this.n.images++; }
}

class Element {
  constructor(tag, doc) {
    this.tagName = tag.toUpperCase(); this.doc = doc; this.children = []; this.attrs = {};
    this.listeners = {}; this.style = {}; this.textContent = ""; this.classList = { add() {} };
    this.value = ""; this.checked = false; this.selected = false;
  }
  set innerHTML(v) { this.children = []; }
  get scrollTop() { return 0; } set scrollTop(v) {} get scrollLeft() { return 0; } set scrollLeft(v) {}
  get innerHTML() { return ""; }
  appendChild(c) { c.parent = this; this.children.push(c); if (this.tagName === "SELECT" && c.selected) this.value = c.attrs.value; if (this.tagName === "SELECT" && this.value === "" ) this.value = c.attrs.value; return c; }
  setAttribute(k, v) { this.attrs[k] = String(v); if (k === "value") this.value = String(v); }
  getAttribute(k) { return this.attrs[k]; }
  addEventListener(k, f) { (this.listeners[k] = this.listeners[k] || []).push(f); }
  dispatch(k, ev) { (this.listeners[k] || []).forEach((f) => f(ev || {})); }
  getContext() { return new Ctx2D(this.doc.counter); }
  getBoundingClientRect() { return { left: 0, top: 0 }; }
  all(pred, out = []) { if (pred(this)) out.push(this); this.children.forEach((c) => c.all(pred, out)); return out; }
}

function makeWindow(language) {
  const counter = { lines: 0, rects: 0, texts: 0, images: 0 };
  const doc = { counter, byId: {} };
  doc.createElement = (t) => new Element(t, doc);
  doc.getElementById = (id) => doc.byId[id];
  return {
    document: doc, navigator: { language, languages: [language] }, devicePixelRatio: 1,
    atob: (s) => Buffer.from(s, "base64").toString("binary"),
    DecompressionStream, Response, Blob,  // node >= 18 has the browser's Compression Streams
  };
}

module.exports = { makeWindow, Element };

async function main() {
  // usage: node dom_stub.js attention.js data.json language  -> prints a JSON report
  const [js, dataPath, lang] = process.argv.slice(2);
  const window = makeWindow(lang || "en");
  new Function("window", fs.readFileSync(js, "utf8"))(window);
  const data = JSON.parse(fs.readFileSync(dataPath, "utf8"));
  const root = window.document.createElement("div");
  const report = {};
  let t0 = Date.now();
  const w = await window.PelukAttention.render(root, data);
  report.head_ms = Date.now() - t0;
  report.lang = root.attrs["data-lang"];
  report.view0 = root.attrs["data-view"];
  report.lines = window.document.counter.lines;
  const tabs = root.all((e) => e.attrs["data-view"] !== undefined && e.tagName === "BUTTON");
  const model = tabs.find((b) => b.attrs["data-view"] === "model");
  t0 = Date.now();
  model.dispatch("click");
  report.model_ms = Date.now() - t0;
  report.view1 = root.attrs["data-view"];
  const thumbs = root.all((e) => (e.attrs.class || "") === "pa-thumb");
  report.thumbs = thumbs.length;
  const last = thumbs[thumbs.length - 1];
  last.dispatch("click");  // opens that layer/head in the head view
  report.view2 = root.attrs["data-view"];
  report.layer2 = +root.attrs["data-layer"];
  report.heads2 = w.state.heads.map((on, i) => (on ? i : -1)).filter((i) => i >= 0);
  const swatches = root.all((e) => (e.attrs.class || "").indexOf("pa-swatch") === 0);
  swatches[0].dispatch("click");  // toggles head 0 on
  report.heads3 = w.state.heads.map((on, i) => (on ? i : -1)).filter((i) => i >= 0);
  report.swatch0 = swatches[0].className;
  let lines = window.document.counter.lines;
  swatches[1].dispatch("dblclick");  // only head 1
  report.heads4 = w.state.heads.map((on, i) => (on ? i : -1)).filter((i) => i >= 0);
  report.redrawn = window.document.counter.lines > lines;
  const heat = root.all((e) => e.attrs["data-view"] === "heat" && e.tagName === "BUTTON")[0];
  const before = window.document.counter.rects;
  heat.dispatch("click");
  report.view3 = root.attrs["data-view"];
  report.heat_rects = window.document.counter.rects - before;
  const langSel = root.all((e) => e.tagName === "SELECT").find((s) => s.children.some((o) => o.attrs.value === "id"));
  langSel.value = "id"; langSel.dispatch("change");
  report.lang2 = root.attrs["data-lang"];
  report.hint = root.all((e) => (e.attrs.class || "") === "pa-hint")[0].textContent;
  const neuronTab = root.all((e) => e.attrs["data-view"] === "neuron" && e.tagName === "BUTTON")[0];
  if (neuronTab) {  // only when the data has queries and keys
    neuronTab.dispatch("click");
    report.view5 = root.attrs["data-view"];
    const queries = root.all((e) => e.attrs["data-role"] === "neuron-query");
    report.neuron_queries = queries.length;
    const rects = window.document.counter.rects;
    queries[queries.length - 1].dispatch("click");
    report.neuron_query = +root.all((e) => e.attrs["data-role"] === "neuron-view")[0].attrs["data-query"];
    report.neuron_rects = window.document.counter.rects - rects;
  }
  const a = w.tensors[w.state.kind];
  report.first_row = Array.from(a.data.slice(0, a.S));  // layer 0, head 0, query 0
  console.log(JSON.stringify(report));
}

if (require.main === module) main().catch((e) => { console.error(e); process.exit(1); });
