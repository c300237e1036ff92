// The live book page: the API with the bearer token, and EventSource (which sends the
// session cookie POST /session set) to watch a book come to life.
"use strict";

const state = { token: null, book: null, events: null, cursor: null };
const $ = (id) => document.getElementById(id);
const base = new URL(".", document.baseURI).pathname.replace(/\/$/, "");

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.token };
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(base + path, { method, headers, body, credentials: "same-origin" });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(response.status + ": " + detail);
  }
  return response.status === 204 ? null : response.json();
}

async function signIn(token) {
  state.token = token.trim();
  try {
    const session = await api("POST", "/session");
    sessionStorage.setItem("storywink-token", state.token);
    $("who").textContent = "signed in as " + session.user_id;
    $("signin").classList.add("hidden");
    $("app").classList.remove("hidden");
    await listBooks(true);
  } catch (error) {
    $("signin-error").textContent = error.message;
  }
}

async function listBooks(fresh) {
  if (fresh) { $("books").innerHTML = ""; state.cursor = null; }
  const query = state.cursor ? "?cursor=" + encodeURIComponent(state.cursor) : "";
  const found = await api("GET", "/books" + query);
  for (const book of found.books) {
    const item = document.createElement("li");
    item.textContent = `${book.title} — ${book.status} (${book.pages_total} pages)`;
    item.dataset.bookId = book.id;
    item.addEventListener("click", () => openBook(book.id));
    $("books").appendChild(item);
  }
  state.cursor = found.next_cursor;
  $("more-books").classList.toggle("hidden", !state.cursor);
}

function pageRow(page) {
  let row = document.querySelector(`.page[data-page="${page.page_number}"]`);
  if (!row) {
    row = document.createElement("div");
    row.className = "page";
    row.dataset.page = page.page_number;
    row.innerHTML = `<img class="photo" alt="photo ${page.page_number}">
      <div class="picture"><div class="slot">waiting</div></div>
      <div><strong>Page ${page.page_number}${page.is_title_page ? " (title)" : ""}</strong>
        <textarea rows="3" class="text"></textarea>
        <button class="save-text">Save text</button>
        <p class="line"></p></div>`;
    row.querySelector(".save-text").addEventListener("click", () => saveText(page.page_number, row));
    $("pages").appendChild(row);
  }
  return row;
}

function showPage(page) {
  const row = pageRow(page);
  if (page.photo_url && row.querySelector(".photo").getAttribute("src") !== page.photo_url) {
    row.querySelector(".photo").src = page.photo_url;
  }
  if (page.text !== undefined && document.activeElement !== row.querySelector(".text")) {
    row.querySelector(".text").value = page.text || "";
  }
  const line = row.querySelector(".line");
  line.className = "line outcome-" + page.outcome;
  row.dataset.outcome = page.outcome;
  if (page.outcome === "OK" && page.image_url) {
    row.querySelector(".picture").innerHTML =
      `<img class="illustration" alt="illustration ${page.page_number}" src="${page.image_url}">`;
    line.textContent = "illustrated";
  } else if (page.outcome === "FLAGGED") {
    row.querySelector(".picture").innerHTML = '<div class="slot">flagged</div>';
    line.textContent = "Flagged: " + (page.reason || "the model refused this photo");
  } else if (page.outcome === "FAILED") {
    row.querySelector(".picture").innerHTML = '<div class="slot">failed</div>';
    line.textContent = "Failed: " + (page.reason || "unknown reason");
  } else {
    line.textContent = page.text_problem ? "No text: " + page.text_problem : "";
  }
}

function showStatus(status, detail) {
  $("book-status").textContent = status;
  $("book-detail").textContent = detail || "";
  const idle = !["GENERATING", "ILLUSTRATING"].includes(status);
  $("write-story").disabled = !idle || status === "STORY_READY";
  $("illustrate").disabled = !["STORY_READY", "PARTIAL", "FAILED"].includes(status);
  $("cancel").disabled = status !== "ILLUSTRATING";
}

async function openBook(bookId) {
  const book = await api("GET", "/books/" + encodeURIComponent(bookId));
  state.book = book;
  $("book").classList.remove("hidden");
  $("book").dataset.bookId = book.id;
  $("book-title").textContent = `${book.title} (for ${book.child_name})`;
  $("pages").innerHTML = "";
  $("book-error").textContent = "";
  book.pages.forEach(showPage);
  showStatus(book.status, book.story_error ? "— " + book.story_error : "");
  follow(book.id);
}

function follow(bookId) {
  if (state.events) state.events.close();
  const events = new EventSource(`${base}/books/${encodeURIComponent(bookId)}/events`,
                                 { withCredentials: true });
  state.events = events;
  let lastStatus = null;
  events.addEventListener("progress", (message) => {
    const progress = JSON.parse(message.data);
    $("book-progress").max = progress.total || 1;
    $("book-progress").value = progress.done;
    showStatus(progress.status, `— ${progress.done}/${progress.total} pages` +
      (progress.flagged ? `, ${progress.flagged} flagged` : "") +
      (progress.failed ? `, ${progress.failed} failed` : ""));
    if (lastStatus && lastStatus !== progress.status) refreshTexts(bookId);
    lastStatus = progress.status;
  });
  events.addEventListener("page", (message) => showPage(JSON.parse(message.data)));
  events.addEventListener("outcome", (message) => {
    const outcome = JSON.parse(message.data);
    events.close();
    $("book").dataset.outcome = outcome.status;
    showStatus(outcome.status, `— ${outcome.pages_ok} of ${outcome.pages_total} pages illustrated` +
      (outcome.pages_flagged ? `, ${outcome.pages_flagged} flagged` : "") +
      (outcome.pages_failed ? `, ${outcome.pages_failed} failed` : "") +
      (outcome.story_error ? ` (${outcome.story_error})` : ""));
    listBooks(true);
  });
}

async function refreshTexts(bookId) {
  const book = await api("GET", "/books/" + encodeURIComponent(bookId));
  book.pages.forEach(showPage);
}

async function saveText(pageNumber, row) {
  try {
    await api("PUT", `/books/${state.book.id}/pages/${pageNumber}/text`,
              { text: row.querySelector(".text").value });
    row.querySelector(".line").textContent = "text saved";
  } catch (error) { $("book-error").textContent = error.message; }
}

async function act(method, suffix) {
  $("book-error").textContent = "";
  try {
    await api(method, `/books/${state.book.id}/${suffix}`);
    follow(state.book.id);
  } catch (error) { $("book-error").textContent = error.message; }
}

$("signin-button").addEventListener("click", () => signIn($("token").value));
$("more-books").addEventListener("click", () => listBooks(false));
$("write-story").addEventListener("click", () => act("POST", "story"));
$("illustrate").addEventListener("click", () => act("POST", "illustration"));
$("cancel").addEventListener("click", () => act("DELETE", "illustration"));
$("create").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("create-error").textContent = "";
  $("create-button").disabled = true;
  try {
    const form = new FormData($("create"));
    const lines = $("story-lines").value.split("\n").map((l) => l.trim()).filter(Boolean);
    if (lines.length) form.append("story", JSON.stringify({ pages: lines }));
    const book = await api("POST", "/books", form);
    await listBooks(true);
    await openBook(book.id);
  } catch (error) {
    $("create-error").textContent = error.message;
  } finally {
    $("create-button").disabled = false;
  }
});

const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromFragment) history.replaceState(null, "", location.pathname);
const saved = fromFragment || sessionStorage.getItem("storywink-token");
if (saved) signIn(saved);
