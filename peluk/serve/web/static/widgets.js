/* peluk web: the inference widget of a model page (templates/widget.html).
 *
 * Sends the widget's form to the inference API, through the routes every client uses
 * (POST /models/{id}/pipeline/{task}, /models/{id}/v1/chat/completions with stream: true), and
 * draws the answer: score bars, highlighted entities, an answer, a text, or a chat that streams
 * server-sent events. Requests carry X-Peluk-Web: 1, so the server may use the login cookie.
 * No libraries and no other server: everything works offline.
 */
(function () {
  "use strict";

  const box = document.querySelector("[data-widget]");
  if (!box) return;
  const S = JSON.parse((document.getElementById("peluk-strings") || {}).textContent || "{}");
  const model = box.dataset.model, task = box.dataset.task, kind = box.dataset.widget;
  const form = box.querySelector("form"), out = box.querySelector("[data-role=output]");
  const base = "/models/" + model.split("/").map(encodeURIComponent).join("/");
  const HEADERS = { "Content-Type": "application/json", "X-Peluk-Web": "1" };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;  // model output is text, never HTML
    return e;
  }

  async function post(path, body) {
    const r = await fetch(base + path, { method: "POST", headers: HEADERS, body: JSON.stringify(body),
                                         credentials: "same-origin" });
    if (r.ok) return r;
    const e = await r.json().catch(() => ({}));
    const detail = e.error && (e.error.message || e.error);
    throw new Error(r.status === 401 ? S.login : `${S.error} ${r.status}${detail ? ": " + detail : ""}`);
  }

  function bars(items) {  // [{label, score}] best first
    const list = el("ul", "bars");
    items.forEach((item) => {
      const li = el("li"), bar = el("span", "bar"), fill = el("span", "fill");
      fill.style.width = (100 * Math.max(0, Math.min(1, item.score))).toFixed(1) + "%";
      bar.appendChild(fill);
      li.append(el("span", "label", item.label), bar, el("span", "score", item.score.toFixed(3)));
      list.appendChild(li);
    });
    return list;
  }

  function entities(text, spans) {  // the input with each entity marked
    const p = el("p", "entities");
    let at = 0;
    spans.slice().sort((a, b) => a.start - b.start).forEach((s) => {
      if (s.start < at) return;
      p.append(document.createTextNode(text.slice(at, s.start)));
      const mark = el("mark", "entity", text.slice(s.start, s.end));
      const label = s.entity_group || s.entity || "";
      mark.dataset.entity = label;
      mark.title = `${label} (${S.score} ${s.score.toFixed(3)})`;
      mark.appendChild(el("span", "tag", label));
      p.appendChild(mark);
      at = s.end;
    });
    p.append(document.createTextNode(text.slice(at)));
    return p;
  }

  const value = (name) => form.elements[name].value;
  const lines = (name) => value(name).split("\n").map((s) => s.trim()).filter(Boolean);

  // widget kind → [task route, request body, answer → element]
  const WIDGETS = {
    classify: () => ["text-classification", { inputs: value("text") },
      (r) => bars(Array.isArray(r[0]) ? r[0] : r)],
    "zero-shot": () => {
      const labels = value("labels").split(",").map((s) => s.trim()).filter(Boolean);
      return ["zero-shot-classification", { inputs: value("text"), parameters: { candidate_labels: labels } },
        (r) => bars(r)];
    },
    similarity: () => {
      const sentences = lines("sentences");
      return ["sentence-similarity", { inputs: { source_sentence: value("source"), sentences: sentences } },
        (r) => bars(r.map((score, i) => ({ label: sentences[i], score: score })))];
    },
    "fill-mask": () => ["fill-mask", { inputs: value("text") },
      (r) => bars((Array.isArray(r[0]) ? r[0] : r).map((c) => ({ label: c.token_str, score: c.score })))],
    qa: () => ["question-answering", { inputs: { question: value("question"), context: value("context") } },
      (r) => {
        const d = el("div", "answer");
        d.append(el("b", "", S.answer + ": "), el("span", "text", r.answer));
        d.appendChild(bars([{ label: S.score, score: r.score }]));
        return d;
      }],
    ner: () => {
      const text = value("text");
      return ["token-classification", { inputs: text }, (r) => entities(text, r)];
    },
    text2text: () => [task, { inputs: value("text") }, (r) => {
      const o = Array.isArray(r) ? r[0] : r;
      return el("p", "generated", o.translation_text || o.summary_text || o.generated_text || "");
    }],
  };

  async function compute() {
    const [route, body, show] = WIDGETS[kind] ? WIDGETS[kind]() : WIDGETS.classify();
    const answer = await (await post("/pipeline/" + route, body)).json();
    out.textContent = "";
    out.appendChild(show(answer));
  }

  // --- chat: history kept in the page, the answer streamed as server-sent events ----------------
  let history = [];
  const log = box.querySelector("[data-role=chat-log]");

  async function stream(response, onDelta) {
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value: chunk, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          const data = line.startsWith("data:") ? line.slice(5).trim() : "";
          if (data && data !== "[DONE]") onDelta(JSON.parse(data));
        }
      }
    }
  }

  async function chat() {
    const text = value("text").trim();
    if (!text) return;
    form.elements.text.value = "";
    history.push({ role: "user", content: text });
    log.appendChild(el("div", "msg user", text));
    const bubble = log.appendChild(el("div", "msg assistant"));
    let answer = "";
    const show = (piece) => {
      if (!piece) return;
      answer += piece;
      bubble.textContent = answer;
      log.scrollTop = log.scrollHeight;
    };
    let response;
    try {
      response = await post("/v1/chat/completions", { messages: history, stream: true });
    } catch (e) {  // a model without a chat template: continue the conversation as plain text
      if (!/ 422/.test(e.message)) throw e;
      const prompt = history.map((m) => m.content).join("\n") + "\n";
      response = await post("/v1/completions", { prompt: prompt, stream: true });
      await stream(response, (d) => show(d.choices && d.choices[0] && d.choices[0].text));
      history.push({ role: "assistant", content: answer });
      return;
    }
    await stream(response, (d) => show(d.choices && d.choices[0] && d.choices[0].delta && d.choices[0].delta.content));
    history.push({ role: "assistant", content: answer });
  }

  const clear = box.querySelector("[data-role=clear]");
  if (clear) clear.addEventListener("click", () => { history = []; log.textContent = ""; out.textContent = ""; });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    box.dataset.state = "busy";
    if (kind !== "chat") out.textContent = S.loading;
    try {
      await (kind === "chat" ? chat() : compute());
      box.dataset.state = "done";
    } catch (e) {
      out.textContent = "";
      out.appendChild(el("p", "alert", e.message));
      box.dataset.state = "error";
    } finally {
      button.disabled = false;
    }
  });
})();
