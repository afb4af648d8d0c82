// Touchstone's pages: a little JavaScript over /api/v1. No framework, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const pct = (p) => (100 * p).toFixed(1) + "%";
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

// POST/GET JSON; a non-2xx answer becomes an Error carrying the server's one-line detail.
async function api(path, body) {
  const opts = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  let resp;
  try {
    resp = await fetch("/api/v1" + path, opts);
  } catch (e) {
    throw new Error("the server cannot be reached (" + e.message + ")");
  }
  const text = await resp.text();
  let data = null;
  try { data = JSON.parse(text); } catch (e) { /* not JSON: say so below */ }
  if (!resp.ok) {
    const detail = data && data.detail ? data.detail : text.slice(0, 300) || resp.statusText;
    throw new Error(detail + " (HTTP " + resp.status + ")");
  }
  return data;
}

function showError(el, err) {
  el.textContent = err ? String(err.message || err) : "";
  el.hidden = !err;
}

// Run `work` with the button disabled and the spinner turning.
async function busy(button, spinner, errorEl, work, waitText) {
  button.disabled = true;
  spinner.hidden = false;
  if (waitText) waitText.hidden = false;
  showError(errorEl, null);
  try {
    await work();
  } catch (e) {
    showError(errorEl, e);
  } finally {
    button.disabled = false;
    spinner.hidden = true;
    if (waitText) waitText.hidden = true;
  }
}

function split(elA, elB, pA, labelA, labelB) {
  elA.style.width = Math.max(0, Math.min(100, 100 * pA)) + "%";
  elB.style.width = Math.max(0, Math.min(100, 100 * (1 - pA))) + "%";
  elA.textContent = pA >= 0.12 ? labelA + " " + pct(pA) : "";
  elB.textContent = 1 - pA >= 0.12 ? labelB + " " + pct(1 - pA) : "";
  elA.title = labelA + " " + pct(pA);
  elB.title = labelB + " " + pct(1 - pA);
}

// ------------------------------------------------------------------------------- the tool's evidence
const FIGURES = [
  ["L_over_D", "L/D", (v) => v.toFixed(1)], ["CL", "CL", (v) => v.toFixed(3)], ["CD", "CD", (v) => v.toFixed(4)],
  ["alpha_required", "required angle of attack (deg)", (v) => v.toFixed(1)], ["CL_required", "CL required", (v) => v.toFixed(3)],
  ["CL_max", "CL max", (v) => v.toFixed(3)], ["wing_loading", "wing loading (N/m²)", (v) => v.toFixed(0)],
  ["stall_margin", "stall margin", (v) => (100 * v).toFixed(0) + "%"], ["feasible", "flies the mission", (v) => (v ? "yes" : "no")],
  ["reason", "status", (v) => String(v).replace(/_/g, " ")],
];

// The simulator's reason in words, as touchstone.debate writes it: "a_higher_L_over_D" -> "A has the higher L/D".
function simReason(reason) {
  const m = /^([ab])_(higher_L_over_D|only_feasible)$/.exec(reason);
  if (!m) return reason.replace(/_/g, " ");
  return m[2] === "higher_L_over_D" ? `${m[1].toUpperCase()} has the higher L/D` : `only ${m[1].toUpperCase()} can fly the mission`;
}

function figuresTable(fa, fb) {
  let rows = "";
  for (const [key, label, fmt] of FIGURES) {
    if (!(key in fa) && !(key in fb)) continue;
    const cell = (f) => (f[key] === null || f[key] === undefined ? "–" : esc(fmt(f[key])));
    rows += `<tr><th>${label}</th><td>${cell(fa)}</td><td>${cell(fb)}</td></tr>`;
  }
  return rows;
}

function swatch(hex, label) {
  return `<span class="swatch"><i style="background:${esc(hex)}"></i><span>${label}<br><code>${esc(hex)}</code></span></span>`;
}

function sideOfCode(v) {
  if (!v) return "";
  if (v.ok) return `<span class="badge agree">passes its tests</span>`;
  const ev = v.evidence || {};
  return `<span class="badge disagree">${esc(String(v.reason).replace(/_/g, " "))}</span>` +
    (ev.message ? `<pre>${esc(ev.message)}</pre>` : "") + (ev.stdout ? `<pre>${esc(ev.stdout)}</pre>` : "");
}

function evidenceHtml(tool, labels) {
  const ev = tool.evidence || {};
  const [la, lb] = labels;
  switch (tool.world) {
    case "numbers": {
      let out = "";
      if (ev.actual !== undefined) out += `<p>The true value is <b>${esc(ev.actual)}</b>.</p>`;
      if (ev.claimed !== undefined) out += `<p>The statement claims <b>${esc(ev.claimed)}</b>.</p>`;
      if (ev.a !== undefined && ev.b !== undefined) out += `<p>${la} reads as ${esc(ev.a)}, ${lb} as ${esc(ev.b)}.</p>`;
      return out;
    }
    case "code":
      if (ev.a || ev.b) {
        return `<div class="sides"><div><h3>${la}</h3>${sideOfCode(ev.a)}</div><div><h3>${lb}</h3>${sideOfCode(ev.b)}</div></div>`;
      }
      return sideOfCode({ok: ev.reason === "pass", reason: ev.reason, evidence: ev});
    case "colour": {
      const one = (e, label) => `<div><h3>${label}</h3><div class="swatches">${swatch(e.colour, "the colour shown")}` +
        `${swatch(e.nearest_reference, "nearest " + esc(e.name))}</div><p class="muted">CIEDE2000 distance ${esc(e.delta_e2000)}` +
        ` (a name fits within 5, does not from 10)</p></div>`;
      if (ev.a && ev.b) return `<div class="sides">${one(ev.a, la)}${one(ev.b, lb)}</div>`;
      return ev.colour ? one(ev, "The statement") : "";
    }
    case "wing":
      if (ev.a && ev.b) {
        return `<table class="figures"><thead><tr><th></th><th>${la}</th><th>${lb}</th></tr></thead><tbody>${figuresTable(ev.a, ev.b)}</tbody></table>`;
      }
      return `<table class="figures"><tbody>${figuresTable(ev, ev).replace(/<td>[^<]*<\/td><\/tr>/g, "</tr>")}</tbody></table>`;
    case "facts": {
      const one = (v, label) => `<p>${label}: <span class="badge ${v.ok ? "agree" : "disagree"}">${v.ok ? "true" : "false"}</span> ` +
        `<span class="muted">${esc(Object.entries(v.evidence || {}).map(([k, x]) => k + ": " + x).join(", "))}</span></p>`;
      if (ev.a && ev.b) return one(ev.a, la) + one(ev.b, lb);
      return `<p class="muted">${esc(Object.entries(ev).map(([k, x]) => k + ": " + x).join(", "))}</p>`;
    }
  }
  return "";
}

function toolHtml(resp, isPair) {
  const tool = resp.verifier;
  if (!tool) {
    return `<div class="tool"><p class="muted">No world recognises this question, so no tool checked it. ` +
      `The examples above show each world's own wording.</p></div>`;
  }
  const labels = isPair ? ["A", "B"] : ["true", "false"];
  const name = (x) => (isPair ? String(x).toUpperCase() : x ? "true" : "false");
  let head;
  if (tool.answer === null) {
    head = `The <b>${esc(tool.world)}</b> tool cannot tell (${esc(String(tool.reason).replace(/_/g, " "))}).`;
  } else {
    const verdict = resp.agree ? `<span class="badge agree">agrees with the model</span>` : `<span class="badge disagree">disagrees with the model</span>`;
    head = `The <b>${esc(tool.world)}</b> tool says <b>${name(tool.answer)}</b> ${verdict}`;
  }
  return `<div class="tool" id="tool-verdict"><h3>The tool</h3><p>${head}</p>${evidenceHtml(tool, labels)}` +
    `<details><summary class="muted small">all evidence</summary><pre>${esc(JSON.stringify(tool.evidence, null, 2))}</pre></details></div>`;
}

// -------------------------------------------------------------------------------------------- Compare
function comparePage() {
  const form = $("#compare-form");
  api("/examples").then((examples) => {
    for (const ex of examples) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "example";
      b.textContent = ex.world;
      b.addEventListener("click", () => { $("#prompt").value = ex.prompt; $("#a").value = ex.a; $("#b").value = ex.b; });
      $("#examples").appendChild(b);
    }
  }).catch(() => { $("#examples").hidden = true; });

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy($("#judge-button"), $("#judge-spinner"), $("#judge-error"), async () => {
      const r = await api("/judge/pair", {prompt: $("#prompt").value, a: $("#a").value, b: $("#b").value});
      const j = r.judge;
      const conf = j.choice === "a" ? j.p_a : j.p_b;
      $("#verdict").textContent = `The model prefers ${j.choice.toUpperCase()} (confidence ${pct(conf)})`;
      $("#verdict").dataset.choice = j.choice;
      split($("#bar-a"), $("#bar-b"), j.p_a, "A", "B");
      const o = r.orders;
      $("#orders tbody").innerHTML =
        `<tr><td>A shown first</td><td>${pct(o.a_first)}</td><td>${pct(1 - o.a_first)}</td></tr>` +
        `<tr><td>B shown first</td><td>${pct(o.b_first)}</td><td>${pct(1 - o.b_first)}</td></tr>` +
        `<tr><th>both (the verdict)</th><th>${pct(j.p_a)}</th><th>${pct(j.p_b)}</th></tr>`;
      $("#tool").innerHTML = toolHtml(r, true);
      $("#result").hidden = false;
    }, $("#judge-wait"));
  });

  $("#claim-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy($("#claim-button"), $("#claim-spinner"), $("#claim-error"), async () => {
      const r = await api("/judge/claim", {statement: $("#statement").value});
      const j = r.judge;
      $("#claim-verdict").textContent = `The model says ${j.choice ? "true" : "false"} (confidence ${pct(j.choice ? j.p_true : j.p_false)})`;
      split($("#claim-true"), $("#claim-false"), j.p_true, "true", "false");
      $("#claim-tool").innerHTML = toolHtml(r, false);
      $("#claim-result").hidden = false;
    });
  });
}

// --------------------------------------------------------------------------------------------- Debate
const MISSION = ["speed", "altitude", "weight", "alpha_limit", "max_span"];
const WING = ["span", "root_chord", "taper", "sweep", "twist", "airfoil"];

function debatePage() {
  const form = $("#debate-form");
  const field = (name) => form.elements[name];
  const read = (side) => {
    const d = {};
    for (const k of WING) d[k] = k === "airfoil" ? field(side + "." + k).value : Number(field(side + "." + k).value);
    return d;
  };
  const mission = () => Object.fromEntries(MISSION.map((k) => [k, Number(field(k).value)]));
  const fill = (side, d) => {
    for (const k of WING) if (k in d) field(side + "." + k).value = d[k];
  };

  $("#random-a").addEventListener("click", async () => {
    try {
      const d = await api("/wing/random");
      for (const k of MISSION) field(k).value = d[k];
      fill("a", d);
      fill("b", await api("/wing/variant", {...read("a"), ...mission()}));
    } catch (e) { showError($("#debate-error"), e); }
  });
  $("#random-b").addEventListener("click", async () => {
    try {
      fill("b", await api("/wing/variant", {...read("a"), ...mission()}));
    } catch (e) { showError($("#debate-error"), e); }
  });

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy($("#debate-button"), $("#debate-spinner"), $("#debate-error"), async () => {
      const r = await api("/debate", {a: {...read("a"), ...mission()}, b: read("b")});
      $("#debate-verdict").textContent = `The model chooses design ${r.choice.toUpperCase()} (confidence ${pct(r.confidence)})`;
      split($("#debate-bar-a"), $("#debate-bar-b"), r.p_a, "A", "B");
      $("#drawing").src = r.drawing;
      $("#figures tbody").innerHTML = figuresTable(r.figures.a, r.figures.b);
      const sim = r.simulator;
      $("#simulator").innerHTML = sim.better
        ? `The simulator rates <b>${sim.better.toUpperCase()}</b> better (${esc(simReason(sim.reason))}) ` +
          (sim.better === r.choice ? `<span class="badge agree">agrees with the model</span>` : `<span class="badge disagree">disagrees with the model</span>`)
        : `The simulator finds no clear winner (${esc(simReason(sim.reason))}).`;
      $("#argument").innerHTML = r.text.split("\n").filter((l) => l.trim()).map((l) => `<p>${esc(l)}</p>`).join("");
      $("#debate-result").hidden = false;
    }, $("#debate-wait"));
  });
}

// ----------------------------------------------------------------------------------------------- Loop
function loopPage() {
  const fmtP = (p) => (p === null || p === undefined ? "" : Number(p).toPrecision(3));
  const signed = (v) => (v === null || v === undefined ? "" : (v >= 0 ? "+" : "") + (100 * v).toFixed(1));

  function showProgress(p, running) {
    $("#progress-box").hidden = false;
    $("#progress-fill").style.width = p.percent + "%";
    $("#progress").setAttribute("aria-valuenow", p.percent);
    $("#progress").dataset.percent = p.percent;
    const where = p.step ? `generation ${p.generation}: ${p.step}` : "done";
    $("#progress-label").textContent = `${running ? where + " · " : ""}${p.steps_done} of ${p.steps_total} steps (${p.percent}%)`;
  }

  function addDecision(d) {
    if (document.querySelector(`#decisions tr[data-gen="${d.generation}"]`)) return;
    const changes = Object.keys(d.suites_champion || {}).map((w) => {
      const c = d.suites_challenger[w] - d.suites_champion[w];
      return `<span class="chg ${c > 0 ? "up" : c < 0 ? "down" : ""}">${esc(w)} ${signed(c)}</span>`;
    }).join(" ");
    const tr = document.createElement("tr");
    tr.dataset.gen = d.generation;
    tr.innerHTML = `<td>${d.generation}</td><td><span class="badge ${esc(d.decision)}">${esc(d.decision)}</span></td>` +
      `<td>${esc(d.challenger || "")}</td><td>${esc(d.trained_from || "")}</td><td>${fmtP(d.p_value)}</td><td class="changes">${changes}</td>` +
      `<td class="reason">${esc(d.reason || "")}</td>`;
    $("#decisions tbody").appendChild(tr);
    const img = $("#history-plot");
    img.src = "/api/v1/loop/history.png?t=" + Date.now();
    img.hidden = false;
    if ($("#no-plot")) $("#no-plot").hidden = true;
  }

  async function refreshStatus() {
    try {
      const s = await api("/loop/status");
      $("#champion").textContent = s.champion || "none yet";
      if ($("#generation")) $("#generation").textContent = s.generation === null ? "–" : s.generation;
      if ($("#decided")) $("#decided").textContent = `${s.finished} (${s.promoted} promoted, ${s.rejected} rejected)`;
      for (const [dir, n] of Object.entries(s.data)) {
        const dd = document.querySelector(`dd[data-count="${dir}"]`);
        if (dd) dd.textContent = n.toLocaleString("en") + " records";
      }
      for (const [world, acc] of Object.entries(s.held_out)) {
        const row = document.querySelector(`tr[data-world="${world}"]`);
        if (!row) continue;
        row.querySelector(".hbar").style.width = 100 * acc + "%";
        row.cells[2].textContent = pct(acc);
      }
    } catch (e) { /* the workspace may not exist yet */ }
  }

  function logLine(line) {
    const log = $("#log");
    log.textContent = (log.textContent + line + "\n").split("\n").slice(-60).join("\n");
    log.scrollTop = log.scrollHeight;
  }

  function setRunning(running) {
    $("#retrain").disabled = running;
    $("#retrain").textContent = running ? "Retraining…" : "Retrain";
  }

  const initial = JSON.parse($("#run-state").textContent);
  if (initial.run) showProgress(initial.run.progress, initial.running);
  setRunning(initial.running);
  (initial.log || []).forEach(logLine);

  const events = new EventSource("/api/v1/loop/events");
  events.addEventListener("started", (e) => {
    const s = JSON.parse(e.data);
    $("#log").textContent = "";
    showProgress(s.run.progress, true);
    setRunning(true);
  });
  events.addEventListener("progress", (e) => showProgress(JSON.parse(e.data), true));
  events.addEventListener("decision", (e) => { addDecision(JSON.parse(e.data)); refreshStatus(); });
  events.addEventListener("log", (e) => logLine(JSON.parse(e.data).line));
  events.addEventListener("finished", (e) => {
    const s = JSON.parse(e.data);
    setRunning(false);
    showProgress(s.run.progress, false);
    if (s.run.returncode !== 0) showError($("#retrain-error"), new Error("the loop stopped: " + (s.run.error || "exit status " + s.run.returncode)));
    refreshStatus();
  });

  $("#retrain-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError($("#retrain-error"), null);
    setRunning(true);
    try {
      const s = await api("/loop/retrain", {generations: Number($("#generations").value)});
      showProgress(s.run.progress, true);
    } catch (e) {
      showError($("#retrain-error"), e);
      setRunning(false);
    }
  });
}

const PAGES = {compare: comparePage, debate: debatePage, loop: loopPage};
const init = PAGES[document.body.dataset.page];
if (init) init();
