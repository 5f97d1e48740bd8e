"""``/docs``: the API's reference, rendered from ``/openapi.json`` in the browser, with no CDN.

FastAPI's default docs page loads Swagger UI's scripts and styles from a CDN, which an offline
server cannot reach; this page is self-contained (inline CSS and script, ~100 lines): every
operation with its summary, parameters and request schema, and a form to send a request.
"""

DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>peluk inference API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d232a;background:#fafafa}
header{background:#243447;color:#fff;padding:1rem 2rem}header h1{margin:0;font-size:1.4rem}
main{max-width:980px;margin:0 auto;padding:1rem 2rem}
details{background:#fff;border:1px solid #dde;border-radius:6px;margin:.5rem 0}
summary{cursor:pointer;padding:.5rem .8rem;font-family:ui-monospace,monospace}
.m{display:inline-block;min-width:4.5em;font-weight:bold}.GET{color:#0a7}.POST{color:#26c}
.body{padding:.5rem 1rem 1rem;border-top:1px solid #eee}
pre,textarea{font:13px ui-monospace,monospace;background:#f4f5f7;padding:.6rem;border-radius:4px;overflow:auto}
textarea{width:100%;box-sizing:border-box;min-height:7em;border:1px solid #ccd}
input{font:inherit;padding:.2rem .4rem}button{font:inherit;padding:.3rem 1rem;cursor:pointer}
h2{font-size:1.1rem;margin-top:1.5rem}.muted{color:#667}
</style></head><body>
<header><h1>peluk inference API</h1><div id="desc" class="muted" style="color:#cdd"></div></header>
<main>
<p>Token (if this server needs one): <input id="token" size="44" placeholder="hf_..."></p>
<div id="ops">Loading /openapi.json&hellip;</div>
</main>
<script>
"use strict";
let spec = null;
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
}
function resolve(schema, depth) {
  if (!schema || depth > 6) return schema;
  if (schema.$ref) return resolve(spec.components.schemas[schema.$ref.split("/").pop()], depth + 1);
  const out = Array.isArray(schema) ? [] : {};
  for (const [k, v] of Object.entries(schema))
    out[k] = (typeof v === "object" && v !== null) ? resolve(v, depth + 1) : v;
  return out;
}
function example(schema, depth) {
  schema = resolve(schema, 0) || {};
  if (depth > 3) return null;
  if (schema.default !== undefined) return schema.default;
  if (schema.anyOf) return example(schema.anyOf[0], depth + 1);
  if (schema.type === "object" && schema.properties) {
    const o = {};
    for (const name of schema.required || []) o[name] = example(schema.properties[name], depth + 1);
    return o;
  }
  if (schema.type === "array") return [example(schema.items, depth + 1)];
  return {string: "Hello!", integer: 1, number: 1.0, boolean: false}[schema.type] ?? null;
}
function operation(path, method, op) {
  const body = op.requestBody && op.requestBody.content["application/json"];
  const params = (op.parameters || []).map(p => el("li", {}, el("code", {}, p.name),
    ` (${p.in}${p.required ? ", required" : ""}) ${p.description || ""}`));
  const box = el("div", {class: "body"});
  if (op.description) box.append(el("p", {}, op.description));
  if (params.length) box.append(el("p", {}, "Parameters:"), el("ul", {}, ...params));
  const url = el("input", {size: 70, value: path});
  const text = el("textarea");
  if (body) {
    box.append(el("p", {}, "Body schema:"), el("pre", {}, JSON.stringify(resolve(body.schema, 0), null, 1)));
    text.value = JSON.stringify(example(body.schema, 0), null, 1);
  }
  const out = el("pre", {}, "");
  const send = el("button", {}, "Send");
  send.onclick = async () => {
    out.textContent = "...";
    const headers = {"content-type": "application/json"};
    const token = document.getElementById("token").value.trim();
    if (token) headers.authorization = "Bearer " + token;
    try {
      const r = await fetch(url.value, {method: method.toUpperCase(), headers, body: body ? text.value : undefined});
      out.textContent = r.status + " " + r.statusText + "\\n" + await r.text();
    } catch (e) { out.textContent = String(e); }
  };
  box.append(el("p", {}, "Try it: ", url), ...(body ? [text] : []), send, out);
  return el("details", {}, el("summary", {}, el("span", {class: "m " + method.toUpperCase()}, method.toUpperCase()),
                              path, el("span", {class: "muted"}, "  " + (op.summary || ""))), box);
}
fetch("openapi.json").then(r => r.json()).then(s => {
  spec = s;
  document.getElementById("desc").textContent = (s.info.description || "") + " Version " + s.info.version + ".";
  const groups = {};
  for (const [path, item] of Object.entries(s.paths))
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      (groups[tag] = groups[tag] || []).push(operation(path, method, op));
    }
  const ops = document.getElementById("ops");
  ops.textContent = "";
  for (const [tag, items] of Object.entries(groups)) ops.append(el("h2", {}, tag), ...items);
}).catch(e => { document.getElementById("ops").textContent = "Could not load openapi.json: " + e; });
</script></body></html>
"""
