// Dogtag review page: a grid of tagged photos, corrected with the keyboard or the mouse.
// Plain JavaScript, no build step, nothing loaded from elsewhere. Every text from a results file is
// put into the page with textContent, never as HTML.
"use strict";

const PAGE = 120;
const MIXED = "mixed breed";
const NOT_A_DOG = "not a dog";
const FILTER_NAMES = {
  all: "All", unreviewed: "To review", unsure: "Unsure", dog: "Dog", not_a_dog: "Not a dog",
  error: "Errors", reviewed: "Reviewed",
};

const state = {
  items: [], total: 0, loading: false, done: false, selected: -1,
  filter: "all", breed: "", labels: [], undo: [], viewer: false, tagging: "idle",
};
const $ = (selector, root = document) => root.querySelector(selector);

function photoUrl(kind, item) {
  const path = item.path.split("/").map(encodeURIComponent).join("/");
  return `/api/${kind}/${item.source}/${path}?v=${encodeURIComponent(item.mtime || "")}`;
}

function percent(p) {
  return p === null || p === undefined ? "" : `${Math.round(p * 100)}%`;
}

async function api(url, options = {}) {
  const response = await fetch(url, options);
  const text = await response.text();
  let body;
  try { body = text ? JSON.parse(text) : {}; } catch { body = { detail: text }; }
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
    throw new Error(detail || `${response.status} ${response.statusText}`);
  }
  return body;
}

let noticeTimer = 0;
function notice(text, bad = false) {
  const box = $("#notice");
  box.textContent = text;
  box.classList.toggle("bad", bad);
  box.classList.add("shown");
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => box.classList.remove("shown"), bad ? 7000 : 2200);
}

// ---- the grid ---------------------------------------------------------------------------------

function card(item, index) {
  const article = document.createElement("article");
  article.className = `card status-${item.status}`;
  article.dataset.index = index;
  const thumb = document.createElement("div");
  thumb.className = "thumb";
  if (item.missing) {
    thumb.append(placeholder(item.problem || "This photo is missing."));
  } else {
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = item.path;
    img.src = photoUrl("thumbnail", item);
    img.addEventListener("error", () => img.replaceWith(placeholder(item.error || "Cannot show this photo.")));
    thumb.append(img);
  }
  const info = document.createElement("div");
  info.className = "info";
  fillInfo(info, item);
  article.append(thumb, info);
  article.addEventListener("click", () => { select(index); openViewer(); });
  return article;
}

function placeholder(text) {
  const p = document.createElement("p");
  p.className = "placeholder";
  p.textContent = text;
  return p;
}

function fillInfo(info, item) {
  info.replaceChildren();
  const line = document.createElement("div");
  line.className = "line";
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = item.status.replace(/_/g, " ");
  const confidence = document.createElement("span");
  confidence.className = "confidence";
  confidence.textContent = item.status === "error" ? "" : percent(item.confidence);
  line.append(badge, confidence);
  if (item.reviewed_breed) {
    const reviewed = document.createElement("span");
    reviewed.className = "badge reviewed";
    reviewed.textContent = "reviewed";
    line.append(reviewed);
  }
  const breed = document.createElement("div");
  breed.className = "breed";
  if (item.reviewed_breed) {
    breed.textContent = `\u2713 ${item.reviewed_breed}`;
    if (item.breed && item.breed !== item.reviewed_breed) {
      const was = document.createElement("span");
      was.className = "was";
      was.textContent = item.breed;
      breed.append(was);
    }
  } else {
    breed.textContent = item.status === "error" ? "cannot read" :
      item.status === "not_a_dog" && !item.breed ? "no dog seen" : (item.breed || "");
  }
  breed.title = breed.textContent;
  const top = document.createElement("ol");
  top.className = "top";
  if (item.status === "error") {
    const li = document.createElement("li");
    li.textContent = item.error || "";
    top.append(li);
  }
  for (const choice of (item.top_k || []).slice(0, 3)) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = choice.breed;
    const p = document.createElement("span");
    p.textContent = percent(choice.probability);
    li.append(name, p);
    top.append(li);
  }
  info.append(line, breed, top);
}

function cardAt(index) {
  return $(`#grid .card[data-index="${index}"]`);
}

function refreshCard(index) {
  const element = cardAt(index);
  if (!element) return;
  const item = state.items[index];
  element.classList.toggle("reviewed", Boolean(item.reviewed_breed));
  fillInfo($(".info", element), item);
}

async function loadMore() {
  if (state.loading || state.done) return;
  state.loading = true;
  const params = new URLSearchParams({ status: state.filter, breed: state.breed, offset: state.items.length, limit: PAGE });
  try {
    const page = await api(`/api/photos?${params}`);
    const grid = $("#grid");
    const fragment = document.createDocumentFragment();
    for (const item of page.items) {
      state.items.push(item);
      fragment.append(card(item, state.items.length - 1));
    }
    grid.append(fragment);
    state.total = page.total;
    state.done = state.items.length >= page.total || page.items.length === 0;
    showCounts(page);
    showProblems(page.problems);
    $("#empty").hidden = state.items.length > 0;
    if (state.selected < 0 && state.items.length) select(0);
  } catch (error) {
    notice(`Cannot list the photos: ${error.message}`, true);
  } finally {
    state.loading = false;
  }
  if (!state.done && nearBottom()) loadMore();
}

function nearBottom() {
  return $("#more").getBoundingClientRect().top < window.innerHeight + 600;
}

function reload() {
  state.items = [];
  state.done = false;
  state.selected = -1;
  $("#grid").replaceChildren();
  loadMore();
}

function showCounts(page) {
  const nav = $("#filters");
  nav.replaceChildren();
  for (const [key, name] of Object.entries(FILTER_NAMES)) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.filter = key;
    button.setAttribute("aria-pressed", String(state.filter === key));
    button.textContent = name;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = page.counts[key] ?? 0;
    button.append(count);
    button.addEventListener("click", () => { state.filter = key; reload(); });
    nav.append(button);
  }
  const select = $("#breed-filter");
  const names = Object.keys(page.breeds);
  if (select.options.length - 1 !== names.length) {
    const current = state.breed;
    select.replaceChildren(new Option("all breeds", ""));
    for (const name of names) select.append(new Option(`${name} (${page.breeds[name]})`, name));
    select.value = current;
  }
  const reviewed = page.counts.reviewed || 0;
  $("#summary").textContent = `${page.total} photo${page.total === 1 ? "" : "s"} shown, unsure first` +
    ` \u00b7 ${reviewed} of ${page.counts.all} reviewed`;
}

function showProblems(problems) {
  const box = $("#problems");
  box.replaceChildren(...(problems || []).map((text) => {
    const p = document.createElement("p");
    p.textContent = text;
    return p;
  }));
  box.hidden = !(problems && problems.length);
}

function select(index) {
  if (index < 0 || index >= state.items.length) return;
  const old = cardAt(state.selected);
  if (old) old.classList.remove("selected");
  state.selected = index;
  const element = cardAt(index);
  if (element) {
    element.classList.add("selected");
    element.scrollIntoView({ block: "nearest" });
  }
  if (index > state.items.length - 20) loadMore();
  if (state.viewer) showViewer();
}

function columns() {
  const cards = document.querySelectorAll("#grid .card");
  if (cards.length < 2) return 1;
  const top = cards[0].getBoundingClientRect().top;
  let count = 0;
  for (const element of cards) {
    if (element.getBoundingClientRect().top !== top) break;
    count += 1;
  }
  return Math.max(1, count);
}

// ---- the large view -----------------------------------------------------------------------------

function openViewer() {
  if (state.selected < 0) return;
  state.viewer = true;
  $("#viewer").hidden = false;
  showViewer();
}

function closeViewer() {
  state.viewer = false;
  $("#viewer").hidden = true;
}

function showViewer() {
  const item = state.items[state.selected];
  if (!item) return;
  const viewer = $("#viewer");
  const img = $(".picture img", viewer);
  const missing = $(".picture .placeholder", viewer);
  img.hidden = Boolean(item.missing);
  missing.hidden = !item.missing;
  missing.textContent = item.problem || "";
  if (!item.missing) {
    img.onerror = () => { img.hidden = true; missing.hidden = false; missing.textContent = item.error || "Cannot show this photo."; };
    img.src = photoUrl("large", item);
  }
  $(".path", viewer).textContent = item.path;
  const dog = item.dog_probability === null || item.dog_probability === undefined ? "" :
    ` \u00b7 dog ${percent(item.dog_probability)}`;
  const guess = (item.top_k || [])[0];
  $(".model", viewer).textContent = item.status === "error" ? `Error: ${item.error}` :
    item.status === "not_a_dog" ? `Model: not a dog${dog}${guess ? `; best guess ${guess.breed} ${percent(guess.probability)}` : ""}` :
    `Model: ${item.status}, ${item.breed} ${percent(item.confidence)}${dog}`;
  const choices = $(".choices", viewer);
  choices.replaceChildren();
  (item.top_k || []).forEach((choice, rank) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    if (item.reviewed_breed === choice.breed) button.classList.add("current");
    const name = document.createElement("span");
    const key = document.createElement("kbd");
    key.textContent = String(rank + 1);
    name.append(key, ` ${choice.breed}`);
    const p = document.createElement("span");
    p.textContent = percent(choice.probability);
    button.append(name, p);
    button.addEventListener("click", () => correct(choice.breed));
    li.append(button);
    choices.append(li);
  });
  $(".review", viewer).textContent = item.reviewed_breed ?
    `Reviewed: ${item.reviewed_breed}${item.reviewed_by ? ` by ${item.reviewed_by}` : ""}${item.reviewed_at ? `, ${item.reviewed_at}` : ""}` : "Not reviewed yet";
  $(".meta", viewer).textContent = `${item.size ?? "?"} bytes \u00b7 model ${item.model_version}`;
  const original = $(".original", viewer);
  original.hidden = Boolean(item.missing);
  original.href = photoUrl("original", item);
  $(".search input", viewer).value = "";
}

// ---- corrections ----------------------------------------------------------------------------------

async function correct(name, { advance = true, index = state.selected, undoing = false } = {}) {
  const item = state.items[index];
  if (!item) return;
  const previous = item.reviewed_breed || "";
  try {
    const answer = await api("/api/reviews", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ source: item.source, path: item.path, reviewed_breed: name, reviewed_by: $("#reviewer").value }),
    });
    state.items[index] = answer.item;
    if (!undoing) state.undo.push({ index, previous });
    refreshCard(index);
    if (answer.warnings && answer.warnings.length) notice(answer.warnings.join(" "), true);
    else notice(name ? `Saved: ${name}` : "Review withdrawn");
    if (advance && index === state.selected && index + 1 < state.items.length) select(index + 1);
    else if (state.viewer) showViewer();
  } catch (error) {
    notice(`NOT saved: ${error.message}`, true);
  }
}

function confirmSelected() {
  const item = state.items[state.selected];
  if (!item) return;
  if (item.status === "not_a_dog") return correct(NOT_A_DOG);
  if (!item.breed) return notice("No breed to confirm here: choose one (1-9, M, N or /).", true);
  return correct(item.breed);
}

function chooseTop(rank) {
  const item = state.items[state.selected];
  const choice = item && (item.top_k || [])[rank];
  if (choice) correct(choice.breed);
}

async function undo() {
  const last = state.undo.pop();
  if (!last) return notice("Nothing to undo.");
  select(last.index);
  await correct(last.previous, { advance: false, index: last.index, undoing: true });
}

function searchBreed() {
  if (!state.viewer) openViewer();
  const input = $("#viewer .search input");
  input.focus();
  input.select();
}

function canonicalName(text) {
  const wanted = text.trim().toLowerCase();
  for (const name of [...state.labels, MIXED, NOT_A_DOG]) {
    if (name.toLowerCase() === wanted) return name;
  }
  return text.trim();
}

// ---- keyboard -----------------------------------------------------------------------------------

function onKey(event) {
  const typing = event.target.closest && event.target.closest("input, select, textarea");
  if (typing) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  if ($("#help").open) return;
  if (event.ctrlKey && event.key.toLowerCase() === "z") { event.preventDefault(); undo(); return; }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  let handled = true;
  if (key === "ArrowRight") select(state.selected + 1);
  else if (key === "ArrowLeft") select(state.selected - 1);
  else if (key === "ArrowDown") select(state.viewer ? state.selected + 1 : Math.min(state.items.length - 1, state.selected + columns()));
  else if (key === "ArrowUp") select(state.viewer ? state.selected - 1 : Math.max(0, state.selected - columns()));
  else if (key === "Enter") confirmSelected();
  else if (/^[1-9]$/.test(key)) chooseTop(Number(key) - 1);
  else if (key === "m" || key === "M") correct(MIXED);
  else if (key === "n" || key === "N") correct(NOT_A_DOG);
  else if (key === "u" || key === "U") undo();
  else if (key === "/") searchBreed();
  else if (key === " ") (state.viewer ? closeViewer : openViewer)();
  else if (key === "Escape") closeViewer();
  else if (key === "?") $("#help").showModal();
  else handled = false;
  if (handled) event.preventDefault();
}

// ---- adding photos ------------------------------------------------------------------------------

async function upload(files) {
  files = [...files].filter((file) => file.size > 0);
  if (!files.length) return;
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  notice(`Adding ${files.length} photo${files.length === 1 ? "" : "s"}\u2026`);
  try {
    const answer = await api("/api/photos", { method: "POST", body: form });
    const added = answer.items.map((item) => `${item.path.split("/").pop()}: ${item.breed || item.status} ${percent(item.confidence)}`);
    const problems = answer.errors.length ? ` Not kept: ${answer.errors.join("; ")}` : "";
    notice(`Added ${added.join(", ")}.${problems}`, Boolean(answer.errors.length));
    state.items.unshift(...answer.items);
    const grid = $("#grid");
    grid.replaceChildren(...state.items.map((item, index) => card(item, index)));
    state.selected = -1;
    select(0);
    $("#empty").hidden = true;
  } catch (error) {
    notice(`Not added: ${error.message}`, true);
  }
}

function watchDrops() {
  const overlay = $("#drop-overlay");
  let depth = 0;
  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  window.addEventListener("dragenter", (event) => { if (hasFiles(event)) { depth += 1; overlay.hidden = false; } });
  window.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) overlay.hidden = true; });
  window.addEventListener("dragover", (event) => { if (hasFiles(event)) event.preventDefault(); });
  window.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    overlay.hidden = true;
    upload(event.dataTransfer.files);
  });
}

// ---- tagging progress ---------------------------------------------------------------------------

async function watchStatus() {
  let status;
  try {
    status = await api("/api/status");
  } catch (error) {
    notice(`The review server does not answer: ${error.message}`, true);
    setTimeout(watchStatus, 3000);
    return;
  }
  if (!state.labels.length) {
    state.labels = status.labels;
    $("#breed-names").replaceChildren(...[...status.labels, MIXED, NOT_A_DOG].map((name) => new Option(name)));
  }
  const tagging = status.tagging;
  const box = $("#progress");
  box.hidden = tagging.state !== "tagging" && tagging.state !== "failed";
  const share = tagging.total ? tagging.done / tagging.total : 0;
  $(".fill", box).style.width = `${Math.round(share * 100)}%`;
  $(".text", box).textContent = tagging.state === "failed" ? `Tagging stopped: ${tagging.message}` :
    `Tagging ${tagging.folder}: ${tagging.done} of ${tagging.total} photos (${Math.round(share * 100)}%)`;
  if (state.tagging === "tagging" && tagging.state !== "tagging") reload();
  state.tagging = tagging.state;
  showProblems(status.problems);
  setTimeout(watchStatus, tagging.state === "tagging" ? 700 : 5000);
}

// ---- start --------------------------------------------------------------------------------------

function start() {
  const reviewer = $("#reviewer");
  reviewer.value = localStorage.getItem("dogtag-reviewer") || "";
  reviewer.addEventListener("change", () => localStorage.setItem("dogtag-reviewer", reviewer.value.trim()));
  $("#breed-filter").addEventListener("change", (event) => { state.breed = event.target.value; reload(); });
  document.addEventListener("keydown", onKey);
  $("#viewer .close").addEventListener("click", closeViewer);
  $("#viewer .picture").addEventListener("click", (event) => { if (event.target === event.currentTarget) closeViewer(); });
  const actions = {
    confirm: confirmSelected, mixed: () => correct(MIXED), "not-a-dog": () => correct(NOT_A_DOG), undo,
    previous: () => select(state.selected - 1), next: () => select(state.selected + 1),
  };
  for (const button of document.querySelectorAll("#viewer [data-action]")) {
    button.addEventListener("click", () => actions[button.dataset.action]());
  }
  $("#viewer .search").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("input", event.target);
    const name = canonicalName(input.value);
    if (!name) return;
    input.blur();
    correct(name);
  });
  $("#add-photos").addEventListener("click", () => $("#file-input").click());
  $("#take-photo").addEventListener("click", () => $("#camera-input").click());
  for (const input of [$("#file-input"), $("#camera-input")]) {
    input.addEventListener("change", () => { upload(input.files); input.value = ""; });
  }
  $("#help-button").addEventListener("click", () => $("#help").showModal());
  watchDrops();
  new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) loadMore(); },
    { rootMargin: "600px" }).observe($("#more"));
  watchStatus();
  loadMore();
}

document.addEventListener("DOMContentLoaded", start);
