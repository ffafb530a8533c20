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
  // a distilled run: its students' step counts (each its own network) are the suggested values
  $("step-choices").replaceChildren(...(m.step_choices || []).map((n) => new Option(String(n))));
  $("cfg").value = m.defaults.cfg;
  $("cfg").disabled = !m.conditional;
  $("cfg-value").textContent = $("cfg").value;
  $("class-picker").hidden = !m.conditional;
  renderChips();
  setupEditor(m);
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

// -- editing: an image on a canvas at the model's resolution, a mask drawn over it --------------------------
function setupEditor(m) {
  const editable = m.conditional && !m.latent;
  $("edit-controls").hidden = !editable;
  if (!editable) return;
  for (const id of ["edit-image", "edit-mask"]) { $(id).width = m.resolution; $(id).height = m.resolution; }
  $("edit-class").replaceChildren(...m.classes.map((name, i) => new Option(name, i)));
  clearMask();
  $("edit-image").getContext("2d").clearRect(0, 0, m.resolution, m.resolution);
  state.editLoaded = false;
  $("edit-result").hidden = true;
}

function drawSource(source) {  // centre-crop to a square, scale to the model's resolution
  const c = $("edit-image"), ctx = c.getContext("2d");
  const w = source.naturalWidth || source.width, h = source.naturalHeight || source.height, side = Math.min(w, h);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, c.width, c.height);
  ctx.drawImage(source, (w - side) / 2, (h - side) / 2, side, side, 0, 0, c.width, c.height);
  state.editLoaded = true;
  $("edit-result").hidden = true;
  editError("");
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("that file is not an image the browser can read"));
    img.src = url;
  });
}

async function onFile() {
  const file = $("edit-file").files[0];
  if (!file) return;
  const url = URL.createObjectURL(file);
  try { drawSource(await loadImage(url)); } catch (e) { editError(e.message); } finally { URL.revokeObjectURL(url); }
}

async function onTestImage() {
  const k = Number($("edit-test").value);
  const resp = await fetch(`/api/models/${encodeURIComponent(state.model.id)}/test-images/${k}`);
  if (!resp.ok) { let d = null; try { d = await resp.json(); } catch (e) { d = null; } editError((d && d.detail) || `${resp.status}`); return; }
  const url = URL.createObjectURL(await resp.blob());
  try {
    drawSource(await loadImage(url));
    const label = resp.headers.get("X-Largo-Class");
    if (label !== null) $("edit-class").value = label;
  } finally { URL.revokeObjectURL(url); }
}

function clearMask() {
  const c = $("edit-mask");
  c.getContext("2d").clearRect(0, 0, c.width, c.height);
  state.maskDrawn = false;
}

function paint(ev) {
  const c = $("edit-mask"), r = c.getBoundingClientRect(), ctx = c.getContext("2d");
  const x = (ev.clientX - r.left) * c.width / r.width, y = (ev.clientY - r.top) * c.height / r.height;
  ctx.fillStyle = "#ff2d55";
  ctx.beginPath();
  ctx.arc(x, y, Math.max(1.5, c.width / 12), 0, 2 * Math.PI);
  ctx.fill();
  state.maskDrawn = true;
}

function maskPng() {  // white where drawn, black elsewhere, at the model's resolution
  const c = $("edit-mask"), data = c.getContext("2d").getImageData(0, 0, c.width, c.height);
  const out = document.createElement("canvas");
  out.width = c.width; out.height = c.height;
  const octx = out.getContext("2d"), img = octx.createImageData(c.width, c.height);
  for (let i = 0; i < data.data.length; i += 4) {
    const v = data.data[i + 3] > 0 ? 255 : 0;
    img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
    img.data[i + 3] = 255;
  }
  octx.putImageData(img, 0, 0);
  return out.toDataURL("image/png");
}

function editError(message) {
  $("edit-error").textContent = message;
  $("edit-error").hidden = !message;
}

async function runEdit(ev) {
  ev.preventDefault();
  editError("");
  if (!state.editLoaded) { editError("upload or load an image first"); return; }
  const kind = $("edit-kind").value;
  if (kind === "inpaint" && !state.maskDrawn) { editError("draw the region to fill on the image"); return; }
  const body = {
    model: state.model.id, edit: kind, image: $("edit-image").toDataURL("image/png"),
    target: Number($("edit-class").value), sampler: $("sampler").value, steps: Number($("steps").value),
    cfg: Number($("cfg").value), seed: Number($("seed").value),
  };
  if (kind === "inpaint") { body.mask = maskPng(); body.method = $("edit-method").value; }
  else body.strength = Number($("edit-strength").value);
  let started;
  try { started = await api("POST", "/api/edit", body); } catch (e) { editError(e.message); return; }
  $("edit-run").disabled = true;
  $("edit-status").textContent = "editing…";
  const id = started.job;
  for (;;) {
    await new Promise((r) => setTimeout(r, 300));
    let job;
    try { job = await api("GET", `/api/jobs/${id}`); } catch (e) { editError(e.message); break; }
    if (job.status === "queued" || job.status === "running") {
      $("edit-status").textContent = job.status === "queued" ? `queued (${job.position} ahead)` : `step ${job.done}/${job.total}`;
      continue;
    }
    $("edit-status").textContent = job.status;
    if (job.error) editError(job.error);
    if (job.images.length) showEdit(job.images[0]);
    break;
  }
  $("edit-run").disabled = false;
}

function showEdit(image) {
  $("edit-result-img").src = image.url;
  const verdict = image.verdict ? ` · classifier: ${image.verdict.class} ${Math.round(image.verdict.confidence * 100)}%` : "";
  $("edit-caption").textContent = `${image.edit} → ${image.class} · ${image.evaluations_per_image} evaluations${verdict}`;
  $("edit-result").hidden = false;
}

function setupEditing() {
  $("edit-file").onchange = onFile;
  $("edit-load-test").onclick = onTestImage;
  $("edit-clear").onclick = clearMask;
  $("edit-controls").onsubmit = runEdit;
  $("edit-strength").oninput = () => { $("edit-strength-value").textContent = $("edit-strength").value; };
  const mask = $("edit-mask");
  mask.onpointerdown = (ev) => { state.drawing = true; mask.setPointerCapture(ev.pointerId); paint(ev); };
  mask.onpointermove = (ev) => { if (state.drawing) paint(ev); };
  mask.onpointerup = () => { state.drawing = false; };
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
  setupEditing();
  chooseModel(data.models[0].id);
}

init();
