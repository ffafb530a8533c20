// largo serve: the page. No framework and nothing loaded from elsewhere; the API is /api/*.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { models: [], model: null, chosen: [], job: null, shown: 0, timer: null, active: 0 };

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function api(method, url, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(url, init);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) throw new Error((data && data.detail) || `${resp.status} ${resp.statusText}`);
  return data;
}

// -- models and classes ---------------------------------------------------------------------------------
function chooseModel(id) {
  const m = state.models.find((x) => x.id === id);
  state.model = m;
  state.chosen = [];
  $("model-info").textContent = `${m.dataset} ${m.resolution}px · ${m.classes.length} classes · ${m.source}` +
    (m.latent ? " · latent" : "");
  $("sampler").replaceChildren(...m.samplers.map((s) => new Option(s, s, false, s === m.defaults.sampler)));
  $("steps").value = m.defaults.steps;
  $("steps").max = Math.min(m.max_steps, state.limits.steps);
  $("cfg").value = m.defaults.cfg;
  $("cfg").disabled = !m.conditional;
  $("cfg-value").textContent = $("cfg").value;
  $("class-picker").hidden = !m.conditional;
  renderChips();
}

function renderChips() {
  $("chips").replaceChildren(...state.chosen.map((c) => {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.textContent = state.model.classes[c];
    const x = document.createElement("button");
    x.type = "button";
    x.textContent = "×";
    x.title = "remove";
    x.onclick = () => { state.chosen = state.chosen.filter((k) => k !== c); renderChips(); };
    chip.append(x);
    return chip;
  }));
}

function addClass(index) {
  if (!state.chosen.includes(index)) state.chosen.push(index);
  renderChips();
}

function matches() {
  const q = $("class-search").value.trim().toLowerCase();
  if (!q) return [];
  return state.model.classes.map((name, i) => [name, i]).filter(([name]) => name.toLowerCase().includes(q))
    .sort((a, b) => a[0].toLowerCase().indexOf(q) - b[0].toLowerCase().indexOf(q)).slice(0, 30);
}

function renderOptions() {
  const found = matches();
  state.active = Math.min(state.active, Math.max(found.length - 1, 0));
  $("class-options").replaceChildren(...found.map(([name, i], k) => {
    const li = document.createElement("li");
    li.textContent = name;
    li.setAttribute("role", "option");
    li.dataset.index = i;
    if (k === state.active) li.className = "active";
    li.onmousedown = (ev) => { ev.preventDefault(); pick(i); };
    return li;
  }));
  $("class-options").hidden = found.length === 0;
}

function pick(index) {
  addClass(index);
  $("class-search").value = "";
  state.active = 0;
  renderOptions();
}

function onSearchKey(ev) {
  const found = matches();
  if (ev.key === "ArrowDown") { state.active = Math.min(state.active + 1, found.length - 1); renderOptions(); }
  else if (ev.key === "ArrowUp") { state.active = Math.max(state.active - 1, 0); renderOptions(); }
  else if (ev.key === "Enter") {
    ev.preventDefault();
    if (found.length) pick(found[state.active][1]);
  } else if (ev.key === "Escape") { $("class-options").hidden = true; return; }
  else return;
  ev.preventDefault();
}

// -- generating ------------------------------------------------------------------------------------------
function request() {
  const m = state.model;
  return {
    model: m.id, classes: m.conditional ? state.chosen : [0], per_class: Number($("per-class").value),
    sampler: $("sampler").value, steps: Number($("steps").value), cfg: Number($("cfg").value),
    seed: Number($("seed").value),
  };
}

async function generate(ev) {
  ev.preventDefault();
  showError("");
  if (state.model.conditional && state.chosen.length === 0) { showError("pick at least one class"); return; }
  let started;
  try { started = await api("POST", "/api/generate", request()); } catch (e) { showError(e.message); return; }
  state.job = started.job;
  state.shown = 0;
  $("grid").replaceChildren();
  const per = Number($("per-class").value);  // a row per class; small counts share a row
  $("grid").style.gridTemplateColumns = `repeat(${per >= 3 ? per : per * Math.floor(4 / per)}, 112px)`;
  $("trajectory").hidden = true;
  $("download").hidden = true;
  $("verdict-note").hidden = true;
  $("generate").disabled = true;
  $("cancel").disabled = false;
  $("progress").value = 0;
  $("status").textContent = started.position > 0 ? `queued (${started.position} ahead)` : "starting…";
  clearInterval(state.timer);
  state.timer = setInterval(poll, 300);
}

async function poll() {
  const id = state.job;
  let job;
  try { job = await api("GET", `/api/jobs/${id}`); } catch (e) { stop(); showError(e.message); return; }
  if (id !== state.job) return;
  job.images.slice(state.shown).forEach(addFigure);
  state.shown = job.images.length;
  $("progress").value = job.total ? job.done / job.total : 0;
  if (job.status === "queued") $("status").textContent = `queued (${job.position} ahead)`;
  else if (job.status === "running") $("status").textContent = `step ${job.done}/${job.total} · ${job.images.length}/${job.expected} images`;
  else {
    stop();
    $("status").textContent = `${job.status}: ${job.images.length}/${job.expected} images`;
    if (job.error) showError(job.error);
    if (job.images.length) { $("download").href = job.download_url; $("download").hidden = false; }
  }
}

function stop() {
  clearInterval(state.timer);
  $("generate").disabled = false;
  $("cancel").disabled = true;
}

async function cancel() {
  if (!state.job) return;
  try { await api("POST", `/api/jobs/${state.job}/cancel`); } catch (e) { showError(e.message); }
}

function addFigure(image) {
  const fig = document.createElement("figure");
  fig.dataset.index = image.index;
  const img = document.createElement("img");
  img.src = image.url;
  img.alt = `${image.class}, seed ${image.seed}`;
  const cap = document.createElement("figcaption");
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = image.class;
  name.title = image.class;
  cap.append(name, `seed ${image.seed}`);
  if (image.verdict) {
    const v = document.createElement("div");
    v.className = image.verdict.class === image.class ? "ok verdict" : "other verdict";
    v.textContent = `${image.verdict.class === image.class ? "✓" : "✗"} ${image.verdict.class} ` +
      `${Math.round(image.verdict.confidence * 100)}%`;
    v.title = "the domain classifier's top class and its confidence";
    $("verdict-note").hidden = false;
    cap.append(v);
  }
  fig.append(img, cap);
  fig.onclick = () => showTrajectory(image, fig);
  $("grid").append(fig);
}

function showTrajectory(image, fig) {
  document.querySelectorAll("figure.selected").forEach((f) => f.classList.remove("selected"));
  fig.classList.add("selected");
  $("trajectory").hidden = false;
  $("trajectory-caption").textContent = `${image.class}, seed ${image.seed}: computing x̂₀ along the steps…`;
  const img = $("trajectory-img");
  img.onload = () => {
    $("trajectory-caption").textContent =
      `${image.class}, seed ${image.seed}, ${image.sampler} ${image.steps} steps, guidance ${image.cfg}`;
  };
  img.onerror = () => { $("trajectory-caption").textContent = "the trajectory could not be computed"; };
  img.src = image.trajectory_url;
  $("image-download").href = `${image.url}?download=1`;
}

async function init() {
  let data;
  try { data = await api("GET", "/api/models"); } catch (e) { showError(e.message); return; }
  state.models = data.models;
  state.limits = data.limits;
  const n = data.models.length;
  $("server-info").textContent = `largo ${data.version} · ${data.device} · ${n} model${n === 1 ? "" : "s"}`;
  if (!data.models.length) { showError("no models found: pass --checkpoints or --runs"); $("generate").disabled = true; return; }
  $("model").replaceChildren(...data.models.map((m) => new Option(m.id, m.id)));
  $("model").onchange = () => chooseModel($("model").value);
  $("class-search").oninput = () => { state.active = 0; renderOptions(); };
  $("class-search").onkeydown = onSearchKey;
  $("class-search").onblur = () => { $("class-options").hidden = true; };
  $("cfg").oninput = () => { $("cfg-value").textContent = $("cfg").value; };
  $("controls").onsubmit = generate;
  $("cancel").onclick = cancel;
  $("close-trajectory").onclick = () => { $("trajectory").hidden = true; };
  chooseModel(data.models[0].id);
}

init();
