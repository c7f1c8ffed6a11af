// The PICO playground: one page, no libraries. It reads what the server offers (/openapi.json for
// each route's fields, /api/v1/models for models, samplers and LoRAs), sends generation requests
// asking for an event stream (Accept: text/event-stream) and shows the job's events as they come.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

const KEY_STORE = "pico.apiKey";
const GALLERY_STORE = "pico.gallery";
const PREVIEWS_PER_JOB = 25; // about this many previews a job, whatever its steps
const MAX_STEPS = 250;
// Errors about the mask are shown at the image, where the mask is painted.
const FIELD_SHOWN_AT = { MaskImageBase64: "ImageBase64" };
const NUMBER_FIELDS = ["Steps", "GuidanceScale", "Total", "Width", "Height", "Strength"];

const state = {
  models: [], pipelines: [], samplers: [], loras: [], schemas: {},
  job: null, // {id, controller, started, route, body, cancelled}
  image: null, // {dataUrl, width, height}
  maskPainted: false,
  lastSeed: null,
  gallery: [],
};

// ---- talking to the server ------------------------------------------------------------------

async function api(path, options = {}, retried = false) {
  const headers = new Headers(options.headers || {});
  const key = localStorage.getItem(KEY_STORE);
  if (key) headers.set("Authorization", `Bearer ${key}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && !retried) {
    const asked = await askKey(key ? "The server refused this key. Enter it again." : null);
    if (asked) return api(path, options, true);
  }
  return response;
}

async function readError(response) {
  try {
    const body = await response.json();
    if (body && body.Error) return body.Error;
  } catch (_) { /* not JSON */ }
  return { Message: `The server answered ${response.status} ${response.statusText}` };
}

// Server-Sent Events from a fetch response: calls onEvent(name, data) for each event.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

function askKey(reason) {
  const dialog = $("#key-dialog");
  const input = $("#key-input");
  $("p", dialog).textContent = reason ||
    "This server needs an API key. It is kept in this browser only and sent with every request.";
  input.value = localStorage.getItem(KEY_STORE) || "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const key = input.value.trim();
      if (dialog.returnValue === "ok" && key) {
        localStorage.setItem(KEY_STORE, key);
        resolve(true);
      } else {
        resolve(false);
      }
    }, { once: true });
    dialog.showModal();
    input.focus();
  });
}

// ---- what the server offers -----------------------------------------------------------------

async function loadCatalog() {
  const [docResponse, modelsResponse] = await Promise.all([fetch("/openapi.json"), api("/api/v1/models")]);
  if (!modelsResponse.ok) throw new Error((await readError(modelsResponse)).Message);
  const doc = await docResponse.json();
  const catalog = await modelsResponse.json();
  // single-file checkpoints are models too, named as Model takes them
  const checkpoints = (catalog.Checkpoints || []).filter((c) => c.Status === "ok").map((c) => ({ ...c, Id: c.Name }));
  state.models = catalog.Models.concat(checkpoints);
  state.pipelines = catalog.Pipelines.filter((p) => doc.paths[`/api/v1/${p.Route}`]);
  state.samplers = catalog.Samplers || [];
  state.loras = (catalog.Loras || []).filter((lora) => !lora.Status || lora.Status === "ok");
  for (const pipeline of state.pipelines) {
    const body = doc.paths[`/api/v1/${pipeline.Route}`].post.requestBody.content["application/json"].schema;
    state.schemas[pipeline.Route] = doc.components.schemas[body.$ref.split("/").pop()];
  }
  const scheduler = $("#scheduler");
  for (const name of state.samplers) scheduler.append(new Option(name, name));
  const tasks = new Set(state.pipelines.filter((p) => modelsFor(p.Task).length).map((p) => p.Task));
  for (const radio of $$('input[name="task"]')) radio.closest("label").hidden = !tasks.has(radio.value);
  showLoras();
}

async function refreshServer() {
  try {
    const response = await api("/api/v1/status");
    if (!response.ok) throw new Error((await readError(response)).Message);
    const s = await response.json();
    const busy = s.SlotsInUse ? `${s.SlotsInUse} of ${s.Slots} slot(s) busy` : "idle";
    const queue = s.QueueLength ? `, ${s.QueueLength} waiting` : "";
    $("#server").textContent = `${s.Device} · ${busy}${queue} · PICO ${s.Version}`;
  } catch (error) {
    $("#server").textContent = `Server unreachable: ${error.message}`;
  }
}

function task() {
  return $('input[name="task"]:checked').value;
}

function modelsFor(wanted) {
  const routes = new Set(state.pipelines.filter((p) => p.Task === wanted).map((p) => p.Route));
  return state.models.filter((m) => m.Pipelines.some((r) => routes.has(r)));
}

function currentModel() {
  return state.models.find((m) => m.Id === $("#model").value);
}

function currentRoute() {
  const model = currentModel();
  if (!model) return null;
  return state.pipelines.find((p) => p.Task === task() && model.Pipelines.includes(p.Route)) || null;
}

// The models that can do the chosen task; a new task starts with its own default model
// (the inpainting model for Inpaint), the same task keeps the model chosen.
function fillModels() {
  const select = $("#model");
  const previous = select.dataset.task === task() ? select.value : null;
  select.dataset.task = task();
  const models = modelsFor(task());
  select.replaceChildren(...models.map((m) => new Option(m.Loaded ? `${m.Id} (loaded)` : m.Id, m.Id)));
  const defaults = state.pipelines.filter((p) => p.Task === task()).map((p) => p.DefaultModel);
  // Defaults in the server's order of pipelines: SD 1.5 first for text to image, not the first model by name.
  const firstDefault = defaults.map((id) => models.find((m) => m.Id === id)).find(Boolean);
  const pick = models.find((m) => m.Id === previous) || firstDefault || models[0];
  if (pick) select.value = pick.Id;
  updateForm();
}

// Show the fields the chosen route takes, with its defaults and ranges.
function updateForm() {
  const route = currentRoute();
  const schema = route ? state.schemas[route.Route] : null;
  const props = schema ? schema.properties : {};
  const needs = {
    image: "ImageBase64" in props, mask: "MaskImageBase64" in props,
    phrase: "Phrase" in props, strength: "Strength" in props,
  };
  for (const element of $$("[data-needs]")) element.hidden = !needs[element.dataset.needs];
  $("#route-hint").textContent = route ? `POST /api/v1/${route.Route}` : "No model here can do this.";
  const placeholder = (id, value) => { $(id).placeholder = value === null || value === undefined ? "" : value; };
  const quality = props.Quality ? props.Quality.default : 0.2;
  placeholder("#steps", Math.max(1, Math.round(MAX_STEPS * quality)));
  placeholder("#guidance", props.GuidanceScale && props.GuidanceScale.default);
  placeholder("#strength", props.Strength && props.Strength.default);
  for (const name of NUMBER_FIELDS) {
    const input = $(`[name="${name}"]`);
    const spec = props[name];
    if (!spec) continue;
    if (spec.minimum !== undefined) input.min = spec.minimum;
    if (spec.maximum !== undefined) input.max = spec.maximum;
  }
  $("#generate").disabled = !route || Boolean(state.job);
  showLoras();
  $("#mask-canvas").classList.toggle("active", needs.mask);
}

function showLoras() {
  const route = currentRoute();
  const takes = route && state.schemas[route.Route] && "Loras" in state.schemas[route.Route].properties;
  const field = $("#loras-field");
  field.hidden = !(state.loras.length && takes);
  if (field.hidden || $("#loras").childElementCount) return;
  for (const lora of state.loras) {
    const name = typeof lora === "string" ? lora : lora.Name;
    const row = document.createElement("label");
    row.className = "lora";
    row.innerHTML = '<input type="checkbox"> <span></span> <input type="number" step="0.05" value="1" aria-label="weight">';
    $("span", row).textContent = name;
    row.dataset.name = name;
    $("#loras").append(row);
  }
}

// ---- the request ----------------------------------------------------------------------------

function numberOrText(value) {
  const number = Number(value);
  return value.trim() !== "" && Number.isFinite(number) ? number : value;
}

function buildBody() {
  const route = currentRoute();
  const props = state.schemas[route.Route].properties;
  const body = { Model: $("#model").value };
  if ("Phrase" in props) body.Phrase = $("#prompt").value;
  if ("NegativePhrase" in props && $("#negative").value.trim()) body.NegativePhrase = $("#negative").value;
  for (const name of NUMBER_FIELDS) {
    const input = $(`[name="${name}"]`);
    if (name in props && !input.closest("[hidden]") && input.value !== "") body[name] = numberOrText(input.value);
  }
  if ($("#scheduler").value) body.Scheduler = $("#scheduler").value;
  if (!$("#seed-random").checked && $("#seed").value !== "") body.Seed = numberOrText($("#seed").value);
  if ("ImageBase64" in props && state.image) body.ImageBase64 = state.image.dataUrl;
  if ("MaskImageBase64" in props && state.image) body.MaskImageBase64 = maskDataUrl();
  if (!$("#loras-field").hidden) {
    const chosen = $$(".lora", $("#loras")).filter((row) => $('input[type="checkbox"]', row).checked);
    if (chosen.length) {
      body.Loras = chosen.map((row) => ({ Name: row.dataset.name, Weight: Number($('input[type="number"]', row).value) }));
    }
  }
  return body;
}

function previewInterval(body) {
  const steps = Number(body.Steps) || Number($("#steps").placeholder) || 50;
  return Math.max(1, Math.ceil(steps / PREVIEWS_PER_JOB));
}

async function generate(event) {
  event.preventDefault();
  if (state.job) return;
  clearErrors();
  const route = currentRoute();
  if (!route) return;
  const body = buildBody();
  if ("MaskImageBase64" in state.schemas[route.Route].properties && state.image && !state.maskPainted) {
    showError({ Field: "MaskImageBase64", Message: "Paint the area to repaint on the image first." });
    return;
  }
  const job = { id: null, controller: new AbortController(), started: performance.now(), route, body };
  state.job = job;
  setRunning(true);
  setRun("sending", "Sending…", 0, 1);
  $("#previews").replaceChildren();
  $("#run-note").textContent = "";
  if (window.matchMedia("(max-width: 959px)").matches) $(".run").scrollIntoView({ behavior: "smooth" });
  try {
    const response = await api(`/api/v1/${route.Route}?previews=${previewInterval(body)}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal: job.controller.signal,
    });
    if (!response.ok) {
      const error = await readError(response);
      setRun("failed", "Not started: see the message by the form.", 0, 1);
      showError(error);
      return;
    }
    job.id = response.headers.get("X-Pico-Job");
    await readEvents(response, (name, data) => onEvent(job, name, data));
    if (!job.ended) setRun("failed", "The server closed the stream before the job ended.", 0, 1);
  } catch (error) {
    if (job.cancelled) setRun("cancelled", "Cancelled.", 0, 1);
    else setRun("failed", `Lost the connection to the server: ${error.message}`, 0, 1);
  } finally {
    state.job = null;
    setRunning(false);
    refreshServer();
  }
}

function onEvent(job, name, data) {
  const progress = $("#progress");
  if (name === "queued") {
    job.id = data.Job;
    const text = data.Position > 0 ? `Waiting: ${ordinal(data.Position)} in the queue.` : "Starting…";
    setRun("queued", text, 0, 1);
  } else if (name === "started") {
    setRun("running", "Loading the model and starting…", 0, 1);
    refreshServer();
  } else if (name === "step") {
    const rate = data.StepsPerSecond ? ` · ${data.StepsPerSecond.toFixed(1)} steps/s` : "";
    const left = data.SecondsLeft !== null && data.SecondsLeft !== undefined ? ` · ${duration(data.SecondsLeft)} left` : "";
    setRun("running", `Step ${data.Step} of ${data.Steps}${rate}${left}`, data.Step, data.Steps);
  } else if (name === "preview") {
    showImages(data.Images.map((b64) => `data:image/jpeg;base64,${b64}`), "preview");
  } else if (name === "done") {
    job.ended = true;
    const response = data.Response;
    const seconds = (performance.now() - job.started) / 1000;
    setRun("done", `Done in ${duration(seconds)}: ${response.Images.length} image(s).`, progress.max, progress.max);
    const sources = response.Images.map((image) => `data:${mime(image.Metadata)};base64,${image.ImageBase64}`);
    showImages(sources, "final");
    response.Images.forEach((image, index) => addToGallery({
      src: sources[index], meta: image.Metadata, route: job.route.Route, task: job.route.Task, body: job.body,
    }));
    state.lastSeed = response.Images[0].Metadata.Seed;
    $("#seed-reuse").disabled = false;
    $("#run-note").textContent = (response.Warnings || []).join(" ");
  } else if (name === "failed") {
    job.ended = true;
    setRun("failed", "Failed: see the message by the form.", 0, 1);
    showError(data.Error);
  } else if (name === "cancelled") {
    job.ended = true;
    setRun("cancelled", "Cancelled.", progress.value, progress.max);
  }
}

async function cancel() {
  const job = state.job;
  if (!job) return;
  job.cancelled = true;
  setRun("cancelling", "Cancelling…", $("#progress").value, $("#progress").max);
  if (job.id) {
    try {
      const response = await api(`/api/v1/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" });
      if (response.ok) return; // the stream ends with its cancelled event
    } catch (_) { /* fall through: closing the stream cancels it too */ }
  }
  job.controller.abort();
}

// ---- showing what happens -------------------------------------------------------------------

function setRunning(running) {
  $("#generate").disabled = running || !currentRoute();
  $("#cancel").hidden = !running;
  $("#generate").textContent = running ? "Generating…" : "Generate";
}

function setRun(stateName, text, value, max) {
  const status = $("#run-status");
  status.textContent = text;
  status.dataset.state = stateName;
  const progress = $("#progress");
  progress.max = Math.max(1, max);
  progress.value = value;
}

function showImages(sources, kind) {
  const box = $("#previews");
  box.dataset.kind = kind;
  box.replaceChildren(...sources.map((src) => {
    const img = new Image();
    img.src = src;
    img.alt = kind === "preview" ? "Preview of the image as it forms" : "Generated image";
    return img;
  }));
}

function clearErrors() {
  for (const field of $$(".field.invalid")) field.classList.remove("invalid");
  for (const output of $$("output.error")) output.textContent = "";
}

function showError(error) {
  const text = [error.Message, error.Hint].filter(Boolean).join(" ");
  const name = FIELD_SHOWN_AT[error.Field] || error.Field;
  const field = name ? document.querySelector(`.field[data-field="${CSS.escape(name)}"]`) : null;
  if (field && !field.hidden && !field.closest("[hidden]")) {
    field.classList.add("invalid");
    $("output.error", field).textContent = text;
    const input = $("input, textarea, select", field);
    if (input) input.focus({ preventScroll: false });
  } else {
    $("#form-error").textContent = error.Field ? `${error.Field}: ${text}` : text;
  }
}

function ordinal(n) {
  const suffix = n % 100 >= 11 && n % 100 <= 13 ? "th" : { 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th";
  return `${n}${suffix}`;
}

function duration(seconds) {
  if (seconds < 1) return `${seconds.toFixed(1)} s`;
  if (seconds < 90) return `${Math.round(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function mime(meta) {
  const format = (meta && meta.OutputFormat) || "png";
  return { png: "image/png", jpeg: "image/jpeg", webp: "image/webp" }[format] || "image/png";
}

// ---- the gallery ----------------------------------------------------------------------------

function addToGallery(item, store = true) {
  state.gallery.unshift(item);
  $("#gallery").prepend(card(item));
  $("#gallery-empty").hidden = true;
  if (store) saveGallery();
}

function card(item) {
  const node = $("#card-template").content.firstElementChild.cloneNode(true);
  const meta = item.meta || {};
  $("img", node).src = item.src;
  $("img", node).alt = meta.Phrase || "generated image";
  $(".prompt", node).textContent = meta.Phrase || (item.task === "variation" ? "Variation" : "");
  $(".seed", node).textContent = `Seed ${meta.Seed}`;
  const details = [`${meta.Width}×${meta.Height}`, `${meta.Quality} steps`, meta.Scheduler, `guidance ${meta.GuidanceScale}`,
    meta.Model].filter((part) => part && !String(part).includes("undefined"));
  $(".details", node).textContent = details.join(" · ");
  node.title = JSON.stringify(meta, null, 1);
  const download = $(".download", node);
  download.href = item.src;
  download.download = `pico-${meta.Seed}.${(meta.OutputFormat || "png").replace("jpeg", "jpg")}`;
  $(".use", node).addEventListener("click", () => useSettings(item, false));
  $(".again", node).addEventListener("click", () => {
    useSettings(item, true);
    $("#form").requestSubmit();
  });
  return node;
}

// Fill the form from a gallery item; with the seed, that one image again (Total 1, its seed).
function useSettings(item, withSeed) {
  const radio = $(`input[name="task"][value="${item.task}"]`);
  if (radio) radio.checked = true;
  fillModels();
  if (state.models.some((m) => m.Id === item.body.Model)) $("#model").value = item.body.Model;
  updateForm();
  $("#prompt").value = item.body.Phrase || "";
  $("#negative").value = item.body.NegativePhrase || "";
  for (const name of NUMBER_FIELDS) {
    const value = item.body[name];
    $(`[name="${name}"]`).value = value === undefined ? "" : value;
  }
  $("#scheduler").value = item.body.Scheduler || "";
  if (withSeed) {
    $("#total").value = 1;
    setSeed(item.meta.Seed);
  }
  clearErrors();
  $("#form").scrollIntoView({ behavior: "smooth", block: "start" });
}

function setSeed(seed) {
  $("#seed-random").checked = false;
  $("#seed").value = seed;
}

function saveGallery() {
  const items = state.gallery.map(({ src, meta, route, task: t, body }) => {
    const { ImageBase64, MaskImageBase64, ...rest } = body; // inputs are not kept: they can be large
    return { src, meta, route, task: t, body: rest };
  });
  while (items.length) {
    try {
      sessionStorage.setItem(GALLERY_STORE, JSON.stringify(items));
      return;
    } catch (_) {
      items.pop(); // over the browser's quota: keep the newest that fit
    }
  }
  sessionStorage.removeItem(GALLERY_STORE);
}

function restoreGallery() {
  let items = [];
  try {
    items = JSON.parse(sessionStorage.getItem(GALLERY_STORE) || "[]");
  } catch (_) { /* unreadable: start empty */ }
  for (const item of items.reverse()) addToGallery(item, false);
}

// ---- the input image and the mask brush -----------------------------------------------------

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function loadImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    showError({ Field: "ImageBase64", Message: "That is not an image file." });
    return;
  }
  const dataUrl = await readFile(file);
  const img = new Image();
  img.src = dataUrl;
  try {
    await img.decode();
  } catch (_) {
    showError({ Field: "ImageBase64", Message: "This browser cannot read that image." });
    return;
  }
  state.image = { dataUrl, width: img.naturalWidth, height: img.naturalHeight };
  for (const canvas of [$("#image-canvas"), $("#mask-canvas")]) {
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
  }
  $("#image-canvas").getContext("2d").drawImage(img, 0, 0);
  clearMask();
  $("#canvas-box").hidden = false;
  $("#drop-text").hidden = true;
  clearErrors();
}

function clearImage() {
  state.image = null;
  $("#canvas-box").hidden = true;
  $("#drop-text").hidden = false;
  $("#image-file").value = "";
  clearMask();
}

function clearMask() {
  const canvas = $("#mask-canvas");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  state.maskPainted = false;
}

// The mask as the server wants it: white where painted, black elsewhere, at the image's size.
function maskDataUrl() {
  const painted = $("#mask-canvas");
  const out = document.createElement("canvas");
  out.width = painted.width;
  out.height = painted.height;
  const context = out.getContext("2d");
  context.fillStyle = "#000";
  context.fillRect(0, 0, out.width, out.height);
  context.drawImage(painted, 0, 0);
  return out.toDataURL("image/png");
}

function setUpBrush() {
  const canvas = $("#mask-canvas");
  let last = null;
  const point = (event) => {
    const rect = canvas.getBoundingClientRect();
    const scale = canvas.width / rect.width;
    return { x: (event.clientX - rect.left) * scale, y: (event.clientY - rect.top) * scale, scale };
  };
  const stroke = (from, to) => {
    const context = canvas.getContext("2d");
    context.strokeStyle = "#fff";
    context.fillStyle = "#fff";
    context.lineCap = "round";
    context.lineJoin = "round";
    context.lineWidth = Number($("#brush").value) * to.scale;
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(to.x + 0.01, to.y);
    context.stroke();
    state.maskPainted = true;
  };
  canvas.addEventListener("pointerdown", (event) => {
    if (!canvas.classList.contains("active")) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    last = point(event);
    stroke(last, last);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = point(event);
    stroke(last, next);
    last = next;
  });
  const stop = () => { last = null; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
}

function setUpDrop() {
  const drop = $("#drop");
  const input = $("#image-file");
  $(".like-link", drop).addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (event) => {
    if ((event.key === "Enter" || event.key === " ") && !state.image) {
      event.preventDefault();
      input.click();
    }
  });
  input.addEventListener("change", () => loadImage(input.files[0]));
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) loadImage(event.dataTransfer.files[0]);
  });
}

// ---- wiring ---------------------------------------------------------------------------------

function wire() {
  $("#form").addEventListener("submit", generate);
  $("#cancel").addEventListener("click", cancel);
  for (const radio of $$('input[name="task"]')) radio.addEventListener("change", fillModels);
  $("#model").addEventListener("change", updateForm);
  $("#seed-random").addEventListener("change", () => {
    if ($("#seed-random").checked) $("#seed").value = "";
  });
  $("#seed").addEventListener("input", () => {
    $("#seed-random").checked = $("#seed").value === "";
  });
  $("#seed-reuse").addEventListener("click", () => {
    if (state.lastSeed !== null) setSeed(state.lastSeed);
  });
  $("#mask-clear").addEventListener("click", clearMask);
  $("#image-clear").addEventListener("click", clearImage);
  $("#gallery-clear").addEventListener("click", () => {
    state.gallery = [];
    $("#gallery").replaceChildren();
    $("#gallery-empty").hidden = false;
    sessionStorage.removeItem(GALLERY_STORE);
  });
  $("#key-button").addEventListener("click", () => askKey("The API key for this server (kept in this browser only)."));
  for (const input of $$("input, textarea, select", $("#form"))) {
    input.addEventListener("input", () => {
      const field = input.closest(".field.invalid");
      if (field) {
        field.classList.remove("invalid");
        $("output.error", field).textContent = "";
      }
    });
  }
  setUpDrop();
  setUpBrush();
}

async function start() {
  wire();
  restoreGallery();
  try {
    await loadCatalog();
  } catch (error) {
    $("#form-error").textContent = `Cannot read what this server offers: ${error.message}`;
    $("#generate").disabled = true;
    return;
  }
  fillModels();
  refreshServer();
  document.body.dataset.ready = "true";
}

start();
