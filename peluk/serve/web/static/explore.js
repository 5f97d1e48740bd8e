/* peluk web: the Explore tab (templates/explore.html).
 *
 * Posts the text to POST /models/{id}/attention and draws the answer with peluk's one attention
 * renderer (peluk/viz/static/attention.js, served as /-/static/attention.js): head view, model
 * view and heat maps, in the page's language. The timings land in data-fetch-ms / data-render-ms.
 */
(function () {
  "use strict";

  const root = document.querySelector("[data-role=explore]");
  if (!root) return;
  const S = JSON.parse((document.getElementById("peluk-strings") || {}).textContent || "{}");
  const form = root.querySelector("form"), status = root.querySelector("[data-role=status]");
  const target = root.querySelector("[data-role=view]");
  const url = "/models/" + root.dataset.model.split("/").map(encodeURIComponent).join("/") + "/attention";

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { text: form.elements.text.value };
    for (const name of ["text_pair", "target"]) {
      if (form.elements[name] && form.elements[name].value.trim()) body[name] = form.elements[name].value;
    }
    if (form.elements.neurons && form.elements.neurons.checked) body.neurons = true;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    root.dataset.state = "busy";
    status.textContent = S.loading;
    try {
      const started = performance.now();
      const r = await fetch(url, { method: "POST", credentials: "same-origin", body: JSON.stringify(body),
                                   headers: { "Content-Type": "application/json", "X-Peluk-Web": "1" } });
      const data = await r.json();
      if (!r.ok) throw new Error(r.status === 401 ? S.login : `${S.error} ${r.status}: ${data.error || ""}`);
      const fetched = performance.now();
      const view = await window.PelukAttention.render(target, data, { lang: root.dataset.lang });
      const drawn = performance.now();
      const a = view.tensors[view.state.kind];
      root.dataset.fetchMs = (fetched - started).toFixed(0);
      root.dataset.renderMs = (drawn - fetched).toFixed(0);
      status.textContent = S.rendered.replace("{ms}", root.dataset.renderMs).replace("{tokens}", a.T)
        .replace("{layers}", a.L).replace("{heads}", a.H);
      root.dataset.state = "done";
    } catch (e) {
      status.textContent = e.message;
      root.dataset.state = "error";
    } finally {
      button.disabled = false;
    }
  });
})();
