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

const UNDO_KEPT = 500;  // corrections remembered for undo, across reloads and days

const state = {
  items: [], total: 0, loading: false, done: false, selected: -1, resume: true,
  filter: localStorage.getItem("dogtag-filter") || "unreviewed", breed: "", breeds: [], added: [],
  undo: [], undoKey: "", viewer: false, tagging: "idle", address: "", started: false,
};
const $ = (selector, root = document) => root.querySelector(selector);

function photoUrl(kind, item) {
  const path = item.path.split("/").map(encodeURIComponent).join("/");
  return `/api/${kind}/${item.source}/${path}?v=${encodeURIComponent(item.mtime || "")}`;
}

function percent(p) {
  if (p === null || p === undefined) return "";
  // Alternatives are listed down to 0.1 %: under 1 %, one decimal, so that 0.3 % never reads "0%".
  return p > 0 && p < 0.0095 ? `${(p * 100).toFixed(1)}%` : `${Math.round(p * 100)}%`;
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
    $("#empty").textContent = state.filter === "unreviewed" && page.counts.all ?
      "Every photo is reviewed: choose \u201cAll\u201d or \u201cReviewed\u201d to see them, or add photos." :
      "No photos here. Choose another filter, or add photos.";
  } catch (error) {
    notice(`Cannot list the photos: ${error.message}`, true);
    state.resume = false;
  } finally {
    state.loading = false;
  }
  if (state.resume) resume();
  else if (state.selected < 0 && state.items.length) select(0);
  if (!state.done && nearBottom()) loadMore();
}

// Coming back (a reload, the next day): select the first photo nobody has reviewed yet, loading
// further pages until one is found.
function resume() {
  const next = state.filter === "reviewed" ? 0 : state.items.findIndex((item) => !item.reviewed_breed);
  if (next >= 0 || state.done) {
    state.resume = false;
    select(next >= 0 ? next : 0);
  } else {
    loadMore();
  }
}

// The counts of the filters and the summary, asked again after every change (a correction, an upload).
async function refreshCounts() {
  const params = new URLSearchParams({ status: state.filter, breed: state.breed, offset: 0, limit: 1 });
  try {
    showCounts(await api(`/api/photos?${params}`));
  } catch (error) {
    notice(`Cannot count the photos: ${error.message}`, true);
  }
}

function nearBottom() {
  return $("#more").getBoundingClientRect().top < window.innerHeight + 600;
}

function reload() {
  state.items = [];
  state.done = false;
  state.selected = -1;
  state.resume = true;
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
    button.addEventListener("click", () => {
      state.filter = key;
      localStorage.setItem("dogtag-filter", key);
      reload();
    });
    nav.append(button);
  }
  const select = $("#breed-filter");
  const names = Object.keys(page.breeds).sort(byName);
  const current = state.breed;
  select.replaceChildren(new Option("all breeds", ""));
  for (const name of names) select.append(new Option(`${name} (${page.breeds[name]})`, name));
  select.value = current;
  state.added = names;
  if (document.activeElement === $("#viewer .search input")) showSuggestions();  // a label added meanwhile
  const reviewed = page.counts.reviewed || 0;
  $("#summary").textContent = `${page.total} photo${page.total === 1 ? "" : "s"} shown, unsure first` +
    ` \u00b7 ${reviewed} of ${page.counts.all} reviewed \u00b7 ${page.counts.unreviewed ?? 0} to review`;
}

// Breed names in the order a person expects: "boxer" beside "Boston bull", not after every capital.
function byName(a, b) {
  return a.localeCompare(b, undefined, { sensitivity: "base" }) || a.localeCompare(b);
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

// The name that signs each correction (reviewed_by). Asked for before the first one; a volunteer
// may go on without one, and is not asked again until the page is opened anew.
function reviewerName() {
  return $("#reviewer").value.trim();
}

function saveReviewerName(name) {
  $("#reviewer").value = name.trim();
  localStorage.setItem("dogtag-reviewer", name.trim());
}

function askName() {
  if (reviewerName() || sessionStorage.getItem("dogtag-anonymous")) return Promise.resolve(true);
  const dialog = $("#who");
  const input = $("input", dialog);
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (dialog.returnValue === "name" && input.value.trim()) saveReviewerName(input.value);
      else if (dialog.returnValue === "anonymous") sessionStorage.setItem("dogtag-anonymous", "1");
      resolve(dialog.returnValue === "name" || dialog.returnValue === "anonymous");
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
}

// Corrections run one after another: a key pressed before the last answer is back acts on the photo
// that answer moved on to (its breeds, its place), never on the same photo again.
let corrections = Promise.resolve();
function queued(action) {
  corrections = corrections.then(action, action);
  return corrections;
}

// A correction of the photo selected now (a click, the breed search), once those before it are saved.
function correct(name, options = {}) {
  const index = options.index ?? state.selected;
  return queued(() => correctNow(name, { ...options, index }));
}

async function correctNow(name, { advance = true, index = state.selected, undoing = false } = {}) {
  const item = state.items[index];
  if (!item) return;
  if (!(await askName())) return notice("Not saved: say who you are first (or choose to go on without a name).", true);
  const previous = item.reviewed_breed || "";
  const answer = await saveReview(item, name);
  if (!answer) return;
  state.items[index] = answer.item;
  if (!undoing) remember({ source: item.source, path: item.path, previous, name });
  refreshCard(index);
  if (advance && index === state.selected && index + 1 < state.items.length) select(index + 1);
  else if (state.viewer) showViewer();
  await refreshCounts();
  if (answer.warnings && answer.warnings.length) notice(answer.warnings.join(" "), true);
  else if (undoing) notice(`Undone: ${item.path} ${name ? `is ${name} again` : "is not reviewed any more"}`);
  else notice(name ? `Saved: ${name}` : "Review withdrawn");
}

async function saveReview(item, name) {
  try {
    return await api("/api/reviews", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ source: item.source, path: item.path, reviewed_breed: name, reviewed_by: reviewerName() }),
    });
  } catch (error) {
    notice(`NOT saved: ${error.message}`, true);
    return null;
  }
}

function confirmSelected() {
  const item = state.items[state.selected];
  if (!item) return;
  if (item.status === "not_a_dog") return correctNow(NOT_A_DOG);
  if (!item.breed) return notice("No breed to confirm here: choose one (1-9, M, N or /).", true);
  return correctNow(item.breed);
}

function chooseTop(rank) {
  const item = state.items[state.selected];
  if (!item) return;
  const listed = (item.top_k || []).length;
  const choice = (item.top_k || [])[rank];
  if (choice) return correctNow(choice.breed);
  return notice(listed ? `This photo lists ${listed} breed${listed === 1 ? "" : "s"}: press 1${listed > 1 ? `-${listed}` : ""}, ` +
    "or / to search every breed." : "No breeds listed for this photo: press / to search every breed.", true);
}

// Undo outlives the page: the corrections made in this browser are kept (per set of results files),
// so a volunteer can undo yesterday's last corrections after a reload or a restart of the server.
function remember(entry) {
  state.undo.push(entry);
  state.undo = state.undo.slice(-UNDO_KEPT);
  if (state.undoKey) localStorage.setItem(state.undoKey, JSON.stringify(state.undo));
}

function loadUndo(sources) {
  if (state.undoKey) return;
  state.undoKey = `dogtag-undo:${sources.map((s) => s.results).join("|")}`;
  let kept = [];
  try { kept = JSON.parse(localStorage.getItem(state.undoKey) || "[]"); } catch { kept = []; }
  state.undo = [...(Array.isArray(kept) ? kept : []), ...state.undo].slice(-UNDO_KEPT);
}

function undo() {  // after the corrections still on their way, so it undoes the last one
  return queued(undoNow);
}

async function undoNow() {
  if (!state.undoKey) {  // pressed before the page's first status came: the kept history first
    try {
      loadUndo((await api("/api/status")).sources || []);
    } catch (error) {
      return notice(`Cannot undo yet: ${error.message}`, true);
    }
  }
  const last = state.undo.pop();
  if (state.undoKey) localStorage.setItem(state.undoKey, JSON.stringify(state.undo));
  if (!last) return notice("Nothing to undo.");
  const index = state.items.findIndex((item) => item.source === last.source && item.path === last.path);
  let current = state.items[index];
  if (!current) {
    try {
      current = await api(`/api/photos/${last.source}/${last.path.split("/").map(encodeURIComponent).join("/")}`);
    } catch (error) {
      return notice(`Cannot undo ${last.path}: ${error.message}`, true);
    }
  }
  if ((current.reviewed_breed || "") !== last.name) {
    return notice(`Not undone: ${last.path} was changed since (now ${current.reviewed_breed || "not reviewed"}).`, true);
  }
  if (index >= 0) {
    select(index);
    return correctNow(last.previous, { advance: false, index, undoing: true });
  }
  const answer = await saveReview(current, last.previous);
  if (!answer) return;
  refreshCounts();
  notice(`Undone: ${last.path} ${last.previous ? `is ${last.previous} again` : "is not reviewed any more"}`);
}

// ---- the breed search ---------------------------------------------------------------------------

// Every name a volunteer may pick: the breeds the server lists (with their aliases when it has them),
// mixed breed, not a dog, and the labels volunteers added before (the names of the breed filter).
function searchEntries() {
  const entries = [...state.breeds];
  const known = new Set(entries.map((entry) => entry.name.toLowerCase()));
  for (const name of [MIXED, NOT_A_DOG, ...state.added]) {
    if (!known.has(name.toLowerCase())) {
      known.add(name.toLowerCase());
      entries.push({ name, aliases: [], added: ![MIXED, NOT_A_DOG].includes(name) });
    }
  }
  return entries;
}

function simplify(text) {
  return text.toLowerCase().replace(/[-_'\u2019]+/g, " ").replace(/\s+/g, " ").trim();
}

// The entries that `text` names, best first: the exact name or alias, then names and aliases that
// start with it, then those with a word that does, then those that contain it.
function breedMatches(text, limit = 8) {
  const wanted = simplify(text);
  if (!wanted) return [];
  const found = [];
  for (const entry of searchEntries()) {
    let best = null;
    for (const [rank, candidate] of [entry.name, ...(entry.aliases || [])].entries()) {
      const said = simplify(candidate);
      const score = said === wanted ? 0 : said.startsWith(wanted) ? 1 :
        said.split(" ").some((word) => word.startsWith(wanted)) ? 2 : said.includes(wanted) ? 3 : null;
      if (score !== null && (!best || score < best.score)) best = { entry, score, alias: rank ? candidate : "" };
    }
    if (best) found.push(best);
  }
  // Among equal matches, the breeds the model saw in this photo first.
  const seen = new Set(((state.items[state.selected] || {}).top_k || []).map((choice) => choice.breed));
  found.sort((a, b) => a.score - b.score || seen.has(b.entry.name) - seen.has(a.entry.name) ||
    byName(a.entry.name, b.entry.name));
  return found.slice(0, limit);
}

const search = { matches: [], highlighted: -1, asked: "" };

function showSuggestions() {
  const input = $("#viewer .search input");
  const text = input.value.trim();
  search.matches = breedMatches(text);
  const exact = search.matches.some((match) => match.score === 0);
  search.highlighted = search.matches.length ? 0 : -1;
  if (search.asked !== text) search.asked = "";
  const list = $("#suggestions");
  list.replaceChildren();
  search.matches.forEach((match, position) => list.append(suggestion(match.entry.name, match.alias ?
    `also called ${match.alias}` : match.entry.added ? "added by a volunteer" : "", position)));
  if (text && !exact) list.append(suggestion(`Add \u201c${text}\u201d as a new label`, "not a breed the model knows", -2));
  list.hidden = !text;
  highlight(search.highlighted);
  $("#new-label").hidden = !search.asked;
  $("#new-label").textContent = search.asked ?
    `\u201c${search.asked}\u201d is not a known breed or label. Press Enter again to add it as a new label, or change it.` : "";
}

function suggestion(name, note, position) {
  const li = document.createElement("li");
  li.setAttribute("role", "option");
  li.dataset.position = position;
  li.className = position === -2 ? "new" : "";
  const strong = document.createElement("span");
  strong.textContent = name;
  li.append(strong);
  if (note) {
    const small = document.createElement("small");
    small.textContent = note;
    li.append(small);
  }
  li.addEventListener("mousedown", (event) => { event.preventDefault(); pickSuggestion(position); });
  return li;
}

function highlight(position) {
  search.highlighted = position;
  for (const li of document.querySelectorAll("#suggestions li")) {
    li.setAttribute("aria-selected", String(Number(li.dataset.position) === position));
  }
}

function moveHighlight(step) {
  const positions = [...document.querySelectorAll("#suggestions li")].map((li) => Number(li.dataset.position));
  if (!positions.length) return;
  const at = positions.indexOf(search.highlighted);
  highlight(positions[(at + step + positions.length) % positions.length]);
}

// Enter or Save: the highlighted breed; a text that matches nothing is asked about first.
function pickSuggestion(position = search.highlighted) {
  const input = $("#viewer .search input");
  const text = input.value.trim();
  if (!text) return;
  if (position >= 0 && search.matches[position]) return saveSearched(search.matches[position].entry.name);
  if (position === -2 || search.asked === text) return saveSearched(text);
  search.asked = text;
  showSuggestions();
  highlight(-2);
}

function saveSearched(name) {
  const input = $("#viewer .search input");
  input.value = "";
  search.asked = "";
  $("#suggestions").hidden = true;
  $("#new-label").hidden = true;
  input.blur();
  correct(name);
}

function onSearchKey(event) {
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    moveHighlight(event.key === "ArrowDown" ? 1 : -1);
  } else if (event.key === "Enter") {
    event.preventDefault();
    pickSuggestion();
  } else if (event.key === "Escape") {
    event.preventDefault();
    event.stopPropagation();
    event.target.value = "";
    search.asked = "";
    showSuggestions();
    event.target.blur();
  }
}

function searchBreed() {
  if (!state.viewer) openViewer();
  const input = $("#viewer .search input");
  input.focus();
  input.select();
}

// The breeds from the server: GET /api/breeds or /api/status's `breeds` (names, ids, aliases) where
// the server has them, else the model's labels.
async function loadBreeds(status) {
  let listed = Array.isArray(status.breeds) ? status.breeds : null;
  if (!listed) {
    try {
      const answer = await api("/api/breeds");
      listed = Array.isArray(answer) ? answer : answer.breeds;
    } catch {
      listed = null;
    }
  }
  const entries = Array.isArray(listed) && listed.length ?
    listed.map((breed) => typeof breed === "string" ? { name: breed, aliases: [] } :
      { name: breed.name || breed.id, aliases: breed.aliases || [] }) :
    (status.labels || []).map((name) => ({ name, aliases: [] }));
  state.breeds = entries.filter((entry) => entry.name);
  if (document.activeElement === $("#viewer .search input")) showSuggestions();  // typed before they came
}

// ---- keyboard -----------------------------------------------------------------------------------

function onKey(event) {
  // Keys typed into a field belong to it; Enter or Esc hands the keyboard back to the photos, so the
  // next `n` is a correction again and not one more letter of a name.
  const typing = event.target.closest && event.target.closest("input, select, textarea");
  if (typing) {
    if (event.target.id === "reviewer" && event.key === "Enter") {
      event.preventDefault();
      saveReviewerName(event.target.value);
      event.target.blur();
      notice(reviewerName() ? `Your name: ${reviewerName()}. Each correction is signed with it.` : "No name: corrections are not signed.");
    } else if (event.key === "Escape" && !event.target.closest("dialog")) {
      event.target.blur();
    }
    return;
  }
  if (document.querySelector("dialog[open]")) return;
  if (event.ctrlKey && event.key.toLowerCase() === "z") { event.preventDefault(); undo(); return; }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  let handled = true;
  if (key === "ArrowRight") select(state.selected + 1);
  else if (key === "ArrowLeft") select(state.selected - 1);
  else if (key === "ArrowDown") select(state.viewer ? state.selected + 1 : Math.min(state.items.length - 1, state.selected + columns()));
  else if (key === "ArrowUp") select(state.viewer ? state.selected - 1 : Math.max(0, state.selected - columns()));
  else if (key === "Enter") queued(confirmSelected);
  else if (/^[1-9]$/.test(key)) queued(() => chooseTop(Number(key) - 1));
  else if (key === "m" || key === "M") queued(() => correctNow(MIXED));
  else if (key === "n" || key === "N") queued(() => correctNow(NOT_A_DOG));
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
    state.resume = false;
    select(0);
    $("#empty").hidden = state.items.length > 0;
    refreshCounts();
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

// ---- phones ---------------------------------------------------------------------------------------

// The address for phones, as a QR code to scan (the same one the terminal prints).
async function showAddress() {
  if (!state.started) {  // the page's first status is not in yet
    try { state.address = (await api("/api/status")).address || ""; } catch { state.address = ""; }
  }
  const dialog = $("#phone");
  const img = $("img", dialog);
  img.hidden = !state.address;
  if (state.address) img.src = `/api/address.svg?t=${Date.now()}`;
  $(".address", dialog).textContent = state.address || "dogtag review --host 0.0.0.0 FOLDER";
  $(".how", dialog).textContent = state.address ?
    "Scan this with a phone's camera on the shelter's network: it opens this page, signed in." :
    "Only this computer can open this page. For phones on the shelter's network, stop it (Ctrl-C) and " +
    "start it again with:";
  dialog.showModal();
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
  if (!state.started) {
    state.started = true;
    loadUndo(status.sources || []);
    state.address = status.address || "";
    await loadBreeds(status);
  }
  const tagging = status.tagging;
  const box = $("#progress");
  const learning = state.learning === "learning" || state.learning === "rescoring";  // the bar is learning's
  box.hidden = !learning && tagging.state !== "tagging" && tagging.state !== "failed";
  if (!learning) box.classList.toggle("bad", tagging.state === "failed");
  const share = tagging.total ? tagging.done / tagging.total : 0;
  if (!learning) $(".fill", box).style.width = `${Math.round(share * 100)}%`;
  if (!learning) $(".text", box).textContent = tagging.state === "failed" ? `Tagging stopped: ${tagging.message}` :
    `Tagging ${tagging.folder}: ${tagging.done} of ${tagging.total} photos (${Math.round(share * 100)}%)`;
  if (state.tagging === "tagging" && tagging.state !== "tagging") reload();
  state.tagging = tagging.state;
  showProblems(status.problems);
  setTimeout(watchStatus, tagging.state === "tagging" ? 700 : 5000);
}

// ---- learning from the corrections -------------------------------------------------------------

async function startLearning() {
  const count = state.corrections || 0;
  if (!confirm(`Learn from ${count} corrections? The model is checked on held-out photos first; the page then uses it.`)) return;
  try {
    await api("/api/learn", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    watchLearning();
  } catch (error) {
    notice(`Learning did not start: ${error.message}`, true);
  }
}

async function watchLearning() {
  let learning;
  try {
    learning = await api("/api/learn");
  } catch {
    setTimeout(watchLearning, 10000);
    return;
  }
  state.corrections = learning.corrections;
  const button = $("#learn");
  const busy = learning.state === "learning" || learning.state === "rescoring";
  button.hidden = !learning.corrections && !busy;
  button.disabled = busy;
  button.textContent = busy ? "Learning..." : `Learn from ${learning.corrections} corrections`;
  const box = $("#progress");
  if (busy) {
    box.hidden = false;
    const share = learning.total ? learning.done / learning.total : 0;
    $(".fill", box).style.width = `${Math.round(share * 100)}%`;
    $(".text", box).textContent = `Learning (${learning.stage}): ${learning.done} of ${learning.total}`;
  } else if (state.learning === "learning" || state.learning === "rescoring") {
    box.hidden = true;
    const figures = `right on ${learning.after} of ${learning.photos} held-out corrections (before: ${learning.before})`;
    if (learning.state === "done") {
      notice(`Learned: ${figures}. The page now uses ${learning.model}.`);
      state.labels = [];
      reload();
    } else {
      notice(learning.state === "refused" ? `Not used, it would be worse: ${learning.message}` :
        `Learning stopped: ${learning.message}`, true);
    }
  }
  state.learning = learning.state;
  setTimeout(watchLearning, busy ? 700 : 5000);
}

// ---- start --------------------------------------------------------------------------------------

function start() {
  const reviewer = $("#reviewer");
  reviewer.value = localStorage.getItem("dogtag-reviewer") || "";
  reviewer.addEventListener("change", () => saveReviewerName(reviewer.value));
  $("#breed-filter").addEventListener("change", (event) => {
    state.breed = event.target.value;
    event.target.blur();  // the arrow keys go back to the photos
    reload();
  });
  document.addEventListener("keydown", onKey);
  $("#viewer .close").addEventListener("click", closeViewer);
  $("#viewer .picture").addEventListener("click", (event) => { if (event.target === event.currentTarget) closeViewer(); });
  const actions = {
    confirm: () => queued(confirmSelected), mixed: () => correct(MIXED), "not-a-dog": () => correct(NOT_A_DOG), undo,
    previous: () => select(state.selected - 1), next: () => select(state.selected + 1),
  };
  for (const button of document.querySelectorAll("#viewer [data-action]")) {
    button.addEventListener("click", () => actions[button.dataset.action]());
  }
  $("#viewer .search").addEventListener("submit", (event) => { event.preventDefault(); pickSuggestion(); });
  const searchInput = $("#viewer .search input");
  searchInput.addEventListener("input", showSuggestions);
  searchInput.addEventListener("keydown", onSearchKey);
  searchInput.addEventListener("blur", () => { $("#suggestions").hidden = true; });
  $("#phone-button").addEventListener("click", showAddress);
  $("#add-photos").addEventListener("click", () => $("#file-input").click());
  $("#take-photo").addEventListener("click", () => $("#camera-input").click());
  for (const input of [$("#file-input"), $("#camera-input")]) {
    input.addEventListener("change", () => { upload(input.files); input.value = ""; });
  }
  $("#help-button").addEventListener("click", () => $("#help").showModal());
  $("#learn").addEventListener("click", startLearning);
  watchDrops();
  new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) loadMore(); },
    { rootMargin: "600px" }).observe($("#more"));
  watchStatus();
  watchLearning();
  loadMore();
}

document.addEventListener("DOMContentLoaded", start);
