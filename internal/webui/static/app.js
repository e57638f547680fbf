// Sluice web UI: hand-written, no framework, no build step.
//
// The page polls the driver's JSON API (../api/v1/, protojson of the
// proto/sluice/v1 messages) every 2 s while the tab is visible and redraws
// the current route: #/ (jobs), #/jobs/NAME (one job), #/executors.
//
// Rules that keep it safe under a strict Content-Security-Policy: every DOM
// node is built with createElement and textContent (never parsed from an
// HTML string), no inline style attribute is written, no eval.
//
// For tests, document.body carries data-poll (scheduled, fetching, paused,
// signin) and data-route; elements that tests look for have data-testid.
'use strict';

const API = new URL('../api/v1/', document.baseURI);
const POLL_MS = 2000;
const TOKEN_KEY = 'sluice.token';
const PROGRESS_LIMIT = 100;
const TASK_BATCHES = 5;
const MAX_TASK_ROWS = 200;
const PHASES = ['plan', 'record', 'dispatch', 'execute', 'commit'];
const RUN_PHASES = ['plan', 'record', 'execute', 'commit']; // BatchRun.phase
const ACTIVE = new Set(['PENDING', 'RUNNING', 'RETRYING', 'STOPPING']);
const STOPPABLE = new Set(['PENDING', 'RUNNING', 'RETRYING']);
const RESUMABLE = new Set(['STOPPED', 'FINISHED', 'FAILED']);
const ROLES = { viewer: 1, operator: 2, admin: 3 };

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- DOM helpers

// h builds an HTML element. attrs: class, text, dataset, on<event>, hidden,
// any other attribute; children: nodes, strings, arrays, null (skipped).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

// s builds an SVG element; attributes are set as given.
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// replace swaps a region's children, keeping keyboard focus on the element
// with the same data-key when the old one had it (the table is rebuilt at
// every poll; a focused Stop button must stay focused).
function replace(region, ...children) {
  const active = document.activeElement;
  const key = active && region.contains(active) ? active.dataset.key : undefined;
  region.replaceChildren();
  append(region, children);
  if (key) {
    const again = region.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

// setText changes a node's text only when it differs (keeps selections).
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

// ----------------------------------------------------------------- formatting

const num = (x) => {
  const n = Number(x ?? 0);
  return Number.isFinite(n) ? n : 0;
};
const has = (x) => x !== null && x !== undefined && x !== '';
const intFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const compactFmt = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });

function fmtInt(x) {
  return intFmt.format(num(x));
}

function fmtNum(x) {
  const n = num(x);
  if (Math.abs(n) >= 100000) return compactFmt.format(n);
  if (Math.abs(n) >= 100 || Number.isInteger(n)) return intFmt.format(n);
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function fmtRate(x) {
  return `${fmtNum(x)} rows/s`;
}

function fmtMs(x) {
  const ms = num(x);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const sec = Math.round(ms / 1000);
  if (sec < 3600) return `${Math.floor(sec / 60)} min ${sec % 60} s`;
  return `${Math.floor(sec / 3600)} h ${Math.floor((sec % 3600) / 60)} min`;
}

// fmtMsShort is fmtMs for axis labels, which have little room.
function fmtMsShort(x) {
  const ms = num(x);
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60000) return `${+(ms / 1000).toFixed(1)}s`;
  return `${+(ms / 60000).toFixed(1)}m`;
}

function fmtBytes(x) {
  let n = num(x);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

// when parses a protojson Timestamp; null for absent or the zero time.
function when(x) {
  if (!x) return null;
  const d = new Date(x);
  return Number.isNaN(d.getTime()) || d.getTime() <= 0 ? null : d;
}

function fmtSpan(sec) {
  if (sec < 60) return `${sec} s`;
  if (sec < 3600) return `${Math.floor(sec / 60)} min`;
  if (sec < 86400) return `${Math.floor(sec / 3600)} h ${Math.floor((sec % 3600) / 60)} min`;
  return `${Math.floor(sec / 86400)} d`;
}

function fmtAgo(d) {
  if (!d) return '—';
  const sec = Math.round((Date.now() - d.getTime()) / 1000);
  if (sec < -1) return `in ${fmtSpan(-sec)}`;
  if (sec <= 1) return 'just now';
  return `${fmtSpan(sec)} ago`;
}

function fmtTime(d) {
  if (!d) return '—';
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

function timeEl(d, text) {
  if (!d) return h('span', { class: 'muted', text: '—' });
  return h('time', { datetime: d.toISOString(), title: d.toLocaleString(), text: text ?? fmtAgo(d) });
}

function shortState(x) {
  return String(x || 'JOB_STATE_UNSPECIFIED').replace(/^JOB_STATE_/, '');
}

function clip(text, n) {
  const t = String(text || '').replace(/\s+/g, ' ').trim();
  return t.length > n ? `${t.slice(0, n - 1)}…` : t;
}

// ------------------------------------------------------------ spec summaries

function oneofKey(o) {
  if (!o || typeof o !== 'object') return '';
  return Object.keys(o).find((k) => o[k] !== null && o[k] !== undefined && typeof o[k] === 'object') || '';
}

function triggerText(spec) {
  const t = spec?.trigger || {};
  if (t.once) return 'once';
  if (t.availableNow) return 'availableNow';
  if (has(t.processingTime)) return `processingTime ${t.processingTime}`;
  return 'processingTime 0 (back to back)';
}

// sourceSummary: [kind, names].
function sourceSummary(spec) {
  const src = spec?.source || {};
  if (src.kafka) {
    const k = src.kafka;
    let names = '';
    if (Array.isArray(k.subscribe) && k.subscribe.length) names = k.subscribe.join(', ');
    else if (has(k.subscribePattern)) names = `pattern ${k.subscribePattern}`;
    else if (has(k.assign)) {
      try {
        names = Object.keys(JSON.parse(k.assign)).join(', ');
      } catch {
        names = k.assign;
      }
    }
    return ['Kafka', names];
  }
  if (src.kinesis) return ['Kinesis', (src.kinesis.streamName || '').split(',').map((x) => x.trim()).join(', ')];
  const kind = oneofKey(src);
  return [kind || '—', ''];
}

const SINK_NAMES = {
  console: 'Console', file: 'File', discard: 'Discard', kinesis: 'Kinesis', postgres: 'PostgreSQL', s3: 'S3', kafka: 'Kafka',
};

function sinkSummary(spec) {
  const sink = spec?.sink || {};
  const kind = oneofKey(sink);
  const v = sink[kind] || {};
  let target = '';
  switch (kind) {
    case 'kafka': target = v.topic || (v.topicExpr ? `topicExpr ${v.topicExpr}` : ''); break;
    case 'kinesis': target = v.streamName || ''; break;
    case 'postgres': target = v.table || ''; break;
    case 's3': target = v.bucket ? `s3://${v.bucket}/${v.prefix || ''}` : ''; break;
    case 'file': target = v.path || ''; break;
    default: break;
  }
  return [SINK_NAMES[kind] || kind || '—', target];
}

function checkpointSummary(spec, info) {
  const c = spec?.checkpoint;
  const keep = num(c?.minBatchesToRetain) || 100;
  if (c?.dynamodb) {
    const d = c.dynamodb;
    const where = [d.region, d.endpoint].filter(has).join(', ');
    return [`DynamoDB table ${d.table || 'sluice_checkpoints'}${where ? ` (${where})` : ''}`, keep];
  }
  if (c?.s3) {
    const b = c.s3;
    const where = [b.region, b.endpoint].filter(has).join(', ');
    return [`S3 s3://${b.bucket}/${b.prefix || ''}${where ? ` (${where})` : ''}`, keep];
  }
  const store = info?.checkpointStore;
  return [`The driver's store${store ? ` (${store})` : ''}`, keep];
}

// lagOf reads a partition's lag figures: records (Kafka offsetsBehindLatest)
// and milliseconds (Kinesis millisBehindLatest); null when not reported.
function lagOf(p) {
  const m = p?.metrics || {};
  const pick = (...keys) => {
    for (const k of keys) if (has(m[k])) return num(m[k]);
    return null;
  };
  return {
    rec: pick('offsetsBehindLatest', 'recordsBehindLatest'),
    ms: pick('millisBehindLatest', 'msBehindLatest'),
  };
}

// totalLag sums the partitions' record lag and takes the largest time lag;
// without per-partition figures it falls back to the batch's metrics.
function totalLag(progress) {
  if (!progress) return { rec: null, ms: null, approx: false };
  let rec = null;
  let ms = null;
  for (const p of progress.partitions || []) {
    const l = lagOf(p);
    if (l.rec !== null) rec = (rec ?? 0) + l.rec;
    if (l.ms !== null) ms = Math.max(ms ?? 0, l.ms);
  }
  const m = progress.metrics || {};
  let approx = false;
  if (rec === null && has(m.maxOffsetsBehindLatest)) {
    rec = num(m.maxOffsetsBehindLatest);
    approx = true;
  }
  if (ms === null && has(m.maxMsBehindLatest)) ms = num(m.maxMsBehindLatest);
  return { rec, ms, approx };
}

function lagText(l) {
  const parts = [];
  if (l.rec !== null) parts.push(`${l.approx ? 'max ' : ''}${fmtInt(l.rec)} records`);
  if (l.ms !== null) parts.push(`${fmtMs(l.ms)} behind`);
  return parts.length ? parts.join(' · ') : '—';
}

// ------------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    // A follower names the leader: {leader, leaderHttp}.
    this.leaderHttp = body?.leaderHttp || '';
  }
}

function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

// listJobs reads every page of the job list (the API pages it by name).
async function listJobs() {
  const jobs = [];
  let token = '';
  do {
    const page = await api(`jobs?pageSize=1000${token ? `&pageToken=${encodeURIComponent(token)}` : ''}`);
    jobs.push(...(page.jobs || []));
    token = page.nextPageToken || '';
  } while (token);
  return { jobs };
}

async function api(path, method = 'GET') {
  const headers = { Accept: 'application/json' };
  const tok = token();
  if (tok) headers.Authorization = `Bearer ${tok}`;
  if (method !== 'GET') headers['X-Sluice-Action'] = '1';
  let res;
  try {
    res = await fetch(new URL(path, API), { method, headers, cache: 'no-store', credentials: 'same-origin' });
  } catch (e) {
    throw new ApiError(0, 'UNAVAILABLE', `cannot reach the driver (${e.message || e}): is it running?`);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = null;
  }
  if (!res.ok) {
    const msg = (data && data.message) || text.trim().slice(0, 300) || res.statusText;
    throw new ApiError(res.status, (data && data.code) || `HTTP_${res.status}`, msg, data);
  }
  if (data === null) throw new ApiError(res.status, 'BAD_RESPONSE', `${path}: the answer is not JSON`);
  return data;
}

const jobPath = (name) => `jobs/${encodeURIComponent(name)}`;

// ---------------------------------------------------------------------- state

const state = {
  info: null,
  route: { page: 'jobs' },
  seq: 0, // the latest refresh; older answers are dropped
  timer: 0,
  lastOk: null,
  data: null, // the last answer of the route's loader, for redraws on resize
  busy: new Set(), // "job action" in flight
  tokenDismissed: false,
  actionError: null, // {title, message, code}: stays until dismissed
  notice: '',
};

// role: what the user may do; unknown (0) until /info answered. Without
// authentication every action is allowed.
function role() {
  const info = state.info;
  if (!info) return 0;
  if (info.authRequired === false) return ROLES.admin;
  return ROLES[info.principal?.role] || 0;
}
const canOperate = () => role() >= ROLES.operator;
const canAdmin = () => role() >= ROLES.admin;

function setPoll(v) {
  document.body.dataset.poll = v;
}

// -------------------------------------------------------------------- routing

function parseRoute() {
  const path = location.hash.replace(/^#/, '') || '/';
  if (path === '/' || path === '/jobs' || path === '/jobs/') return { page: 'jobs' };
  if (path === '/executors') return { page: 'executors' };
  const m = path.match(/^\/jobs\/(.+)$/);
  if (m) {
    try {
      return { page: 'job', name: decodeURIComponent(m[1]) };
    } catch {
      return { page: 'notfound', path };
    }
  }
  return { page: 'notfound', path };
}

function onRoute(initial) {
  state.route = parseRoute();
  state.data = null;
  const page = PAGES[state.route.page];
  document.body.dataset.route = state.route.page;
  for (const [id, p] of [['nav-jobs', 'jobs'], ['nav-executors', 'executors']]) {
    const a = $(id);
    if (p === state.route.page || (p === 'jobs' && state.route.page === 'job')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  replace($('main'), page.skeleton(state.route));
  document.title = `${page.title(state.route)} · Sluice`;
  if (!initial) $('main').focus({ preventScroll: true });
  window.scrollTo(0, 0);
  refresh();
}

// -------------------------------------------------------------------- polling

function schedule() {
  clearTimeout(state.timer);
  state.timer = 0;
  if (document.hidden) {
    setPoll('paused');
    return;
  }
  if ($('token-dialog').open) {
    setPoll('signin');
    return;
  }
  state.timer = setTimeout(refresh, POLL_MS);
  setPoll('scheduled');
}

async function refresh() {
  clearTimeout(state.timer);
  state.timer = 0;
  if (document.hidden) {
    setPoll('paused');
    setLive('paused');
    return;
  }
  const seq = ++state.seq;
  const route = state.route;
  const page = PAGES[route.page];
  setPoll('fetching');
  try {
    const [info, data] = await Promise.all([api('info'), page.load(route)]);
    if (seq !== state.seq) return;
    state.info = info;
    state.lastOk = new Date();
    state.data = data;
    renderSession();
    page.render(data, route);
    clearError();
    setLive('on');
  } catch (e) {
    if (seq !== state.seq) return;
    showError(e);
  } finally {
    if (seq === state.seq) schedule();
  }
}

function setLive(mode) {
  const el = $('live-status');
  el.classList.toggle('on', mode === 'on');
  el.classList.toggle('err', mode === 'err');
  const at = state.lastOk ? state.lastOk.toLocaleTimeString() : '';
  let text;
  switch (mode) {
    case 'on': text = `Live · updated ${at}`; break;
    case 'paused': text = 'Paused while the tab is hidden'; break;
    case 'signin': text = 'Sign-in needed'; break;
    default: text = at ? `Not updating · last update ${at}` : 'Not updating'; break;
  }
  setText(el, text);
}

// --------------------------------------------------------------------- errors

// showError explains a failed call in the banner. what names a user action
// ("stop orders"); its error stays until dismissed, while a failed poll is
// replaced by the next successful one.
function showError(e, what) {
  const status = e instanceof ApiError ? e.status : 0;
  const code = e instanceof ApiError ? e.code : 'ERROR';
  if (status === 401) {
    // Whoever was signed in is not any more: offer no action meanwhile.
    state.info = { ...(state.info || {}), authRequired: true, principal: undefined };
    renderSession();
    markBusy();
    setLive('signin');
    const why = token()
      ? 'The driver refused the token this tab sent. Enter another one (the same tokens as the CLI).'
      : 'The driver asks for a token: the same one the CLI uses (SLUICE_TOKEN).';
    if (!state.tokenDismissed || what) openTokenDialog(why);
    banner({ title: 'Sign in to see the cluster.', message: e.message, code, kind: 'signin' });
    return;
  }
  let title = what ? `Could not ${what}.` : "The driver's API failed.";
  let message = `${code}: ${e.message}`;
  if (status === 403) {
    // The driver's message names the caller, its role and the role needed.
    title = what ? `Not allowed to ${what}.` : 'Not allowed.';
    message = e.message;
  }
  if (status) message += ` (HTTP ${status})`;
  const leaderHttp = e.leaderHttp || '';
  if (what) {
    state.actionError = { title, message, code, leaderHttp };
    banner({ ...state.actionError, kind: 'action' });
  } else {
    setLive('err');
    banner({ title, message, code, leaderHttp, kind: 'poll' });
  }
}

function banner({ title, message, code, kind, leaderHttp }) {
  const b = $('error-banner');
  setText($('error-title'), title);
  setText($('error-message'), message);
  const lead = $('error-leader');
  lead.hidden = !leaderHttp;
  if (leaderHttp) lead.href = leaderUI(leaderHttp);
  $('error-retry').hidden = kind !== 'poll';
  $('error-dismiss').hidden = kind !== 'action';
  $('error-signin').hidden = kind !== 'signin';
  b.dataset.code = code;
  b.dataset.kind = kind;
  b.hidden = false;
}

// clearError hides a poll's error after a success; an action's stays.
function clearError() {
  if (state.actionError) banner({ ...state.actionError, kind: 'action' });
  else $('error-banner').hidden = true;
}

// leaderUI is the leader's page for the route shown here.
function leaderUI(base) {
  try {
    return new URL(`ui/${location.hash}`, base.endsWith('/') ? base : `${base}/`).href;
  } catch {
    return base;
  }
}

function needSignIn() {
  return !token() && !!state.info?.authRequired && !state.info?.principal;
}

// --------------------------------------------------------------- sign-in flow

function openTokenDialog(why) {
  const d = $('token-dialog');
  setText($('token-why'), why);
  if (!d.open) {
    $('token-input').value = '';
    d.showModal();
    $('token-input').focus();
  }
  setPoll('signin');
}

function renderSession() {
  const info = state.info || {};
  const follower = info.isLeader === false;
  setText($('leader'), info.leader ? `${follower ? 'Follower · leader' : 'Leader'} ${info.leader}` : (follower ? 'Follower · no leader now' : ''));
  const p = info.principal;
  let who = '';
  if (p) who = `${p.name} · ${p.role}`;
  else if (info.authRequired === false) who = 'No sign-in needed';
  setText($('principal'), who);
  $('signout').hidden = !token();
  $('signin').hidden = !needSignIn();
}

function initDialogs() {
  const td = $('token-dialog');
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('token-input').value.trim();
    if (!v) return;
    try {
      sessionStorage.setItem(TOKEN_KEY, v);
    } catch {
      // Private modes may refuse storage; the token then lasts until reload.
    }
    state.tokenDismissed = false;
    td.close();
    refresh();
  });
  // Dialogs are settled by their buttons and Escape ('cancel'), never by
  // the 'close' event: it arrives later, possibly after the dialog opened
  // again.
  const dismiss = () => {
    td.close();
    state.tokenDismissed = true;
    $('signin').hidden = false;
    schedule();
  };
  $('token-cancel').addEventListener('click', dismiss);
  td.addEventListener('cancel', (ev) => {
    ev.preventDefault();
    dismiss();
  });
  $('signin').addEventListener('click', () => openTokenDialog('Enter a token: the same one the CLI uses (SLUICE_TOKEN).'));
  $('signout').addEventListener('click', () => {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // nothing stored
    }
    state.tokenDismissed = true;
    state.info = null;
    refresh();
  });
  $('error-retry').addEventListener('click', () => refresh());
  $('error-signin').addEventListener('click', () => openTokenDialog('Enter a token: the same one the CLI uses (SLUICE_TOKEN).'));
  $('error-dismiss').addEventListener('click', () => {
    state.actionError = null;
    $('error-banner').hidden = true;
    refresh();
  });

  const cd = $('confirm-dialog');
  $('confirm-cancel').addEventListener('click', () => settleConfirm(false));
  cd.addEventListener('cancel', (ev) => {
    ev.preventDefault();
    settleConfirm(false);
  });
  $('confirm-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    settleConfirm(true);
  });
}

let confirmResolve = null;

function settleConfirm(ok) {
  const resolve = confirmResolve;
  confirmResolve = null;
  $('confirm-dialog').close();
  if (resolve) resolve(ok);
}

// confirm asks with the confirm dialog; resolves true for the danger button.
function askConfirm(title, text, ok) {
  const d = $('confirm-dialog');
  setText($('confirm-title'), title);
  setText($('confirm-text'), text);
  setText($('confirm-ok'), ok);
  settleConfirm(false); // a question still open is answered no
  return new Promise((resolve) => {
    confirmResolve = resolve;
    d.showModal();
    $('confirm-cancel').focus();
  });
}

// -------------------------------------------------------------------- actions

async function act(job, action) {
  if (action === 'delete') {
    const ok = await askConfirm(
      `Delete job ${job}?`,
      `This stops ${job} and deletes its checkpoints (offset log, task ends, commit log). ` +
        'A job submitted later under this name starts without them, from its starting position. This cannot be undone.',
      'Delete job',
    );
    if (!ok) return;
  }
  const key = `${job} ${action}`;
  state.actionError = null;
  state.busy.add(key);
  markBusy();
  try {
    if (action === 'delete') {
      await api(jobPath(job), 'DELETE');
      state.notice = `Deleted job ${job}.`;
      if (state.route.page === 'job') {
        location.hash = '#/';
        return;
      }
    } else {
      const j = await api(`${jobPath(job)}/${action}`, 'POST');
      // Show the answer at once; the next poll brings the rest.
      if (j && j.name) mergeJob(j);
    }
    clearError();
  } catch (e) {
    showError(e, `${action} ${job}`);
  } finally {
    state.busy.delete(key);
    markBusy();
    refresh();
  }
}

function mergeJob(j) {
  const d = state.data;
  if (!d) return;
  if (state.route.page === 'jobs' && Array.isArray(d.jobs)) {
    d.jobs = d.jobs.map((x) => (x.name === j.name ? j : x));
  } else if (state.route.page === 'job' && d.job && d.job.name === j.name) {
    d.job = j;
  } else {
    return;
  }
  PAGES[state.route.page].render(d, state.route);
}

// markBusy disables the buttons of actions in flight and hides those the
// user may no longer take (signed out, or a token of a lower role).
function markBusy() {
  for (const b of document.querySelectorAll('button[data-action]')) {
    b.disabled = state.busy.has(`${b.dataset.job} ${b.dataset.action}`);
    b.hidden = !(b.dataset.action === 'delete' ? canAdmin() : canOperate());
  }
}

function actionButtons(job) {
  const st = shortState(job.state);
  const out = [];
  const btn = (action, label, cls) =>
    h('button', {
      type: 'button',
      class: cls,
      text: label,
      'data-testid': `action-${action}`,
      'aria-label': `${label} job ${job.name}`,
      dataset: { action, job: job.name, key: `${job.name} ${action}` },
      disabled: state.busy.has(`${job.name} ${action}`),
      onclick: () => act(job.name, action),
    });
  if (canOperate() && STOPPABLE.has(st)) out.push(btn('stop', 'Stop', ''));
  if (canOperate() && RESUMABLE.has(st)) out.push(btn('resume', 'Resume', 'primary'));
  if (canAdmin()) out.push(btn('delete', 'Delete', 'danger'));
  return out.length ? h('div', { class: 'actions', 'data-testid': 'actions' }, out) : null;
}

// ------------------------------------------------------------------ job state

function badge(job) {
  const st = shortState(job.state);
  return h('span', { class: `badge ${st.toLowerCase()}`, 'data-testid': 'job-state', text: st });
}

// stateNote: what a user wants to know next to the state.
function stateNote(job, long) {
  const st = shortState(job.state);
  const n = long ? 2000 : 140;
  const r = job.restart;
  if (st === 'RETRYING' && r) {
    const next = when(r.nextAttemptTime);
    const nextText = next ? (next > new Date() ? `next attempt ${fmtAgo(next)}` : 'next attempt due') : '';
    return h('span', { class: 'state-note', 'data-testid': 'retry-note' },
      `attempt ${num(r.attempt)}${nextText ? ` · ${nextText}` : ''}`,
      r.cause ? h('span', { class: 'sub', 'data-testid': 'retry-cause', title: r.cause, text: `cause: ${clip(r.cause, n)}` }) : null);
  }
  if (job.lastError && st !== 'FINISHED') {
    return h('span', { class: 'state-note', 'data-testid': 'last-error', title: job.lastError, text: clip(job.lastError, n) });
  }
  return null;
}

// =================================================================== pages

const PAGES = {
  jobs: {
    title: () => 'Jobs',
    skeleton: () => [
      h('div', { class: 'page-head' },
        h('h1', { id: 'page-title', text: 'Jobs' }),
        h('span', { id: 'jobs-count', class: 'muted', 'data-testid': 'jobs-count' })),
      h('p', { id: 'notice', class: 'muted', role: 'status', hidden: true }),
      h('section', { class: 'panel', 'aria-labelledby': 'page-title' },
        h('div', { id: 'jobs-region', class: 'scroll' }, h('p', { class: 'empty', text: 'Loading jobs…' }))),
    ],
    load: listJobs,
    render: renderJobs,
  },
  job: {
    title: (r) => r.name,
    skeleton: jobSkeleton,
    load: async (r) => {
      const [job, progress] = await Promise.all([
        api(jobPath(r.name)).catch((e) => {
          if (e.status === 404) return null;
          throw e;
        }),
        api(`${jobPath(r.name)}/progress?limit=${PROGRESS_LIMIT}`).catch((e) => {
          if (e.status === 404 || e.status === 501) return { progress: [] };
          throw e;
        }),
      ]);
      return { job, progress: progress.progress || [] };
    },
    render: renderJob,
  },
  executors: {
    title: () => 'Executors',
    skeleton: () => [
      h('div', { class: 'page-head' },
        h('h1', { id: 'page-title', text: 'Executors' }),
        h('span', { id: 'executors-summary', class: 'muted', 'data-testid': 'executors-summary' })),
      h('section', { class: 'panel', 'aria-labelledby': 'page-title' },
        h('div', { id: 'executors-region', class: 'scroll' }, h('p', { class: 'empty', text: 'Loading executors…' }))),
    ],
    load: () => api('executors'),
    render: renderExecutors,
  },
  notfound: {
    title: () => 'Not found',
    skeleton: (r) => [
      h('h1', { id: 'page-title', text: 'Page not found' }),
      h('p', {}, `Nothing at #${r.path}. `, h('a', { href: '#/', text: 'See the jobs' }), '.'),
    ],
    load: async () => ({}),
    render: () => {},
  },
};

// ------------------------------------------------------------------ jobs page

// cardCell is a cell of a table that becomes one card per row on phones:
// the label comes from data-label, the content is one block beside it.
function cardCell(label, attrs, ...children) {
  return h('td', { 'data-label': label, ...attrs }, h('div', { class: 'cell' }, ...children));
}

function renderJobs(data) {
  const jobs = [...(data.jobs || [])].sort((a, b) => String(a.name).localeCompare(String(b.name)));
  const active = jobs.filter((j) => ACTIVE.has(shortState(j.state))).length;
  setText($('jobs-count'), `${jobs.length} ${jobs.length === 1 ? 'job' : 'jobs'} · ${active} active`);
  const notice = $('notice');
  notice.hidden = !state.notice;
  setText(notice, state.notice);
  state.notice = '';
  const region = $('jobs-region');
  if (!jobs.length) {
    replace(region, h('p', { class: 'empty', 'data-testid': 'no-jobs' },
      'No jobs yet. Submit one with ', h('code', { text: 'sluice submit job.yaml' }), '.'));
    return;
  }
  const showActions = canOperate();
  const cols = ['Job', 'State', 'Trigger', 'Source', 'Sink', 'Last batch', 'Input rate', 'Process rate', 'Lag'];
  const numeric = new Set(['Input rate', 'Process rate']);
  if (showActions) cols.push('Actions');
  const rows = jobs.map((j) => {
    const lp = j.lastProgress;
    const [srcKind, srcNames] = sourceSummary(j.spec);
    const [sinkKind, sinkTarget] = sinkSummary(j.spec);
    const cur = j.current;
    const lag = totalLag(lp);
    const td = cardCell;
    return h('tr', { 'data-testid': 'job-row', dataset: { job: j.name, state: shortState(j.state) } },
      td('Job', {}, h('a', { href: `#/jobs/${encodeURIComponent(j.name)}`, 'data-testid': 'job-link', dataset: { key: `link ${j.name}` }, text: j.name })),
      td('State', {}, badge(j), stateNote(j, false)),
      td('Trigger', { 'data-testid': 'job-trigger' }, triggerText(j.spec)),
      td('Source', { 'data-testid': 'job-source' }, srcKind, srcNames ? h('span', { class: 'sub', text: srcNames }) : null),
      td('Sink', { 'data-testid': 'job-sink' }, sinkKind, sinkTarget ? h('span', { class: 'sub', text: sinkTarget }) : null),
      td('Last batch', { 'data-testid': 'job-last-batch' },
        lp ? `#${num(lp.batchId)}` : (has(j.lastCommittedBatch) && num(j.lastCommittedBatch) >= 0 ? `#${num(j.lastCommittedBatch)}` : '—'),
        lp ? h('span', { class: 'sub' }, timeEl(when(lp.timestamp))) : null,
        cur ? h('span', { class: 'sub', text: `#${num(cur.batchId)} running: ${num(cur.tasksDone)}/${num(cur.tasksTotal)} tasks` }) : null),
      td('Input rate', { class: 'num', 'data-testid': 'job-input-rate' }, lp ? fmtRate(lp.inputRowsPerSecond) : '—'),
      td('Process rate', { class: 'num', 'data-testid': 'job-process-rate' }, lp ? fmtRate(lp.processedRowsPerSecond) : '—'),
      td('Lag', { 'data-testid': 'job-lag', dataset: { records: lag.rec ?? '', ms: lag.ms ?? '' } }, lagText(lag)),
      showActions ? td('Actions', {}, actionButtons(j)) : null,
    );
  });
  replace(region, h('table', { id: 'jobs-table', class: 'cards', 'data-testid': 'jobs-table' },
    h('caption', { class: 'visually-hidden', text: 'Jobs, their state, rates and lag' }),
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col', class: numeric.has(c) ? 'num' : null, text: c })))),
    h('tbody', {}, rows)));
}

// ------------------------------------------------------------------- job page

function jobSkeleton(r) {
  const panel = (id, title, ...rest) =>
    h('section', { id, class: 'panel', 'data-testid': id, 'aria-labelledby': `${id}-title` },
      h('h2', { id: `${id}-title` }, title), ...rest);
  return [
    h('p', { class: 'crumbs' }, h('a', { href: '#/', text: 'Jobs' }), ' › '),
    h('div', { class: 'page-head' },
      h('h1', { id: 'job-name', 'data-testid': 'job-name', text: r.name }),
      h('span', { id: 'job-badge' }),
      h('span', { id: 'job-actions', class: 'actions' })),
    h('div', { id: 'job-note' }),
    h('div', { class: 'grid2' },
      panel('current-batch', 'Batch in flight', h('div', { id: 'current-region' }, h('p', { class: 'empty', text: 'Loading…' }))),
      panel('job-overview', 'Overview', h('div', { id: 'overview-region' }))),
    h('h2', { class: 'visually-hidden', text: 'Charts' }),
    h('div', { class: 'charts', id: 'charts' },
      chartFigure('chart-input-rate', 'Input rate'),
      chartFigure('chart-process-rate', 'Process rate'),
      chartFigure('chart-input-rows', 'Input rows'),
      chartFigure('chart-duration', 'Batch duration')),
    panel('lag', h('span', {}, 'Lag ', h('span', { id: 'lag-sub', class: 'muted' })), h('div', { id: 'lag-region' })),
    panel('tasks', h('span', {}, 'Tasks ', h('span', { id: 'tasks-sub', class: 'muted' })), h('div', { id: 'tasks-region', class: 'scroll' })),
    panel('job-errors', 'Errors', h('div', { id: 'errors-region' })),
    h('section', { id: 'job-spec-panel', class: 'panel', 'aria-label': 'Spec' },
      h('details', { open: true },
        h('summary', { text: 'Spec (as submitted, secrets redacted)' }),
        h('label', { class: 'hint check' },
          h('input', { type: 'checkbox', id: 'spec-defaults', 'data-testid': 'spec-defaults', onchange: () => state.data && renderSpec(state.data.job) }),
          ' Show the fields left at their defaults'),
        h('pre', { id: 'job-spec', class: 'spec', 'data-testid': 'job-spec', tabindex: '0', 'aria-label': 'Job spec as JSON' }))),
  ];
}

function chartFigure(id, title) {
  return h('figure', { id, class: 'chart', 'data-testid': id },
    h('figcaption', { id: `${id}-cap` }, h('span', { text: title }), h('span', { class: 'value', id: `${id}-value` })),
    h('div', { class: 'plot', id: `${id}-plot` }));
}

function renderJob(data, route) {
  const { job } = data;
  if (!job) {
    route.missing = true;
    replace($('main'), h('h1', { id: 'job-name', text: route.name }),
      h('p', { 'data-testid': 'job-missing' }, 'There is no job of this name (was it deleted?). ', h('a', { href: '#/', text: 'See the jobs' }), '.'));
    return;
  }
  if (route.missing) {
    route.missing = false;
    replace($('main'), jobSkeleton(route));
  }
  let progress = data.progress.slice();
  const lp = job.lastProgress;
  if (lp && (!progress.length || num(lp.batchId) > num(progress[progress.length - 1].batchId))) progress.push(lp);
  progress = progress.slice(-PROGRESS_LIMIT);
  const last = progress[progress.length - 1] || lp || null;

  replace($('job-badge'), badge(job));
  replace($('job-actions'), actionButtons(job));
  const note = stateNote(job, true);
  if (note) note.classList.add('callout', shortState(job.state).toLowerCase());
  replace($('job-note'), note);
  renderCurrent(job);
  renderOverview(job);
  renderCharts(progress);
  renderLag(last);
  renderTasks(progress);
  renderErrors(job);
  renderSpec(job);
}

// renderSpec shows the spec as JSON. The API emits every field, zero or not
// (proto3 cannot tell a zero from an absent field); unless asked, the page
// leaves out the empty ones, which are the defaults, so the spec reads as
// it was written.
function renderSpec(job) {
  const all = $('spec-defaults')?.checked;
  const spec = all ? (job?.spec ?? {}) : (compact(job?.spec) ?? {});
  setText($('job-spec'), JSON.stringify(spec, null, 2));
}

function compact(v) {
  if (Array.isArray(v)) {
    const a = v.map(compact).filter((x) => x !== undefined);
    return a.length ? a : undefined;
  }
  if (v && typeof v === 'object') {
    const o = {};
    for (const [k, x] of Object.entries(v)) {
      const c = compact(x);
      if (c !== undefined) o[k] = c;
    }
    return Object.keys(o).length ? o : undefined;
  }
  if (v === null || v === '' || v === false || v === 0 || v === '0') return undefined;
  return v;
}

function renderCurrent(job) {
  const region = $('current-region');
  const c = job.current;
  if (!c) {
    const lcb = has(job.lastCommittedBatch) && num(job.lastCommittedBatch) >= 0 ? `Last committed batch: #${num(job.lastCommittedBatch)}.` : 'No batch committed yet.';
    replace(region, h('p', { class: 'empty', 'data-testid': 'no-current' }, `No batch in flight. ${lcb}`));
    return;
  }
  const total = num(c.tasksTotal);
  const done = num(c.tasksDone);
  const phase = c.phase || 'plan';
  const pi = RUN_PHASES.indexOf(phase);
  const started = when(c.startTime);
  const bar = h('progress', { id: 'current-progress', 'data-testid': 'current-progress', 'aria-label': `Batch ${num(c.batchId)}: ${done} of ${total} tasks done` });
  if (phase === 'commit') {
    bar.max = 1;
    bar.value = 1;
  } else if (total > 0) {
    bar.max = total;
    bar.value = done;
  } // else indeterminate while planning and recording the plan
  replace(region,
    h('div', { 'data-testid': 'current', dataset: { batch: num(c.batchId), phase } },
      h('p', {}, h('strong', { text: `Batch #${num(c.batchId)}` }), ' · ', phase, started ? ' · started ' : '', started ? timeEl(started) : ''),
      h('div', { class: 'progress-row' }, bar, h('span', { class: 'mono', 'data-testid': 'current-tasks', text: `${done}/${total} tasks` })),
      h('ol', { class: 'phases', 'aria-label': 'Phases' },
        RUN_PHASES.map((p, i) => h('li', { class: i < pi ? 'done' : i === pi ? 'now' : null, 'aria-current': i === pi ? 'step' : null, text: p }))),
      h('p', { class: 'hint' },
        `${num(c.tasksRunning)} running · ${fmtInt(c.inputRows)} rows read by finished tasks`,
        num(c.taskRetries) ? h('span', { class: 'retried', text: ` · ${num(c.taskRetries)} task retries` }) : null)));
}

function lastBatchText(b) {
  if (!b) return '—';
  const parts = [`#${num(b.batchId)}`, `${fmtInt(b.numInputRows)} rows in`, `${fmtInt(b.numOutputRows)} out`];
  if (num(b.inputBytes)) parts.push(fmtBytes(b.inputBytes));
  parts.push(`${num(b.numTasks)} tasks`);
  if (num(b.taskRetries)) parts.push(`${num(b.taskRetries)} retries`);
  if (num(b.skippedRows)) parts.push(`${fmtInt(b.skippedRows)} skipped`);
  if (num(b.deadLetteredRows)) parts.push(`${fmtInt(b.deadLetteredRows)} dead-lettered`);
  const d = when(b.timestamp);
  return [parts.join(' · '), d ? ' · ' : '', d ? timeEl(d) : ''];
}

// stateText sums a stateful job's state operators (Spark's stateOperators)
// after batch b; null for a stateless job. Figures that are zero in the
// usual case (disk of an in-memory store, restores, late rows) are left out.
function stateText(b) {
  const ops = b?.stateOperators || [];
  if (!ops.length) return null;
  const sum = (k) => ops.reduce((t, op) => t + num(op[k]), 0);
  const parts = [`${fmtInt(sum('numRowsTotal'))} groups (${fmtInt(sum('numRowsUpdated'))} updated)${sum('numShufflePartitions') ? ` in ${fmtInt(sum('numShufflePartitions'))} partitions` : ''}`,
    `${fmtBytes(sum('memoryUsedBytes'))} in memory`];
  if (sum('stateOnDiskBytes')) parts.push(`${fmtBytes(sum('stateOnDiskBytes'))} on disk`);
  if (sum('checkpointBytesWritten')) parts.push(`${fmtBytes(sum('checkpointBytesWritten'))} checkpointed`);
  parts.push(`commit ${fmtMs(sum('commitTimeMs'))}`);
  if (sum('numRestoredPartitions')) parts.push(`restored ${fmtInt(sum('numRestoredPartitions'))} partitions in ${fmtMs(sum('restoreTimeMs'))}`);
  if (sum('numRowsDroppedByWatermark')) parts.push(`${fmtInt(sum('numRowsDroppedByWatermark'))} late rows dropped`);
  return parts.join(' · ');
}

// eventTimeText is a job's event time after batch b (Spark's eventTime):
// the largest seen and the watermark; null for a job without a watermark.
function eventTimeText(b) {
  const et = b?.eventTime || {};
  const parts = [];
  for (const k of ['max', 'watermark']) {
    const d = when(et[k]);
    if (d) parts.push(parts.length ? ' · ' : '', `${k} `, timeEl(d, fmtTime(d)));
  }
  return parts.length ? parts : null;
}

function renderOverview(job) {
  const [srcKind, srcNames] = sourceSummary(job.spec);
  const [sinkKind, sinkTarget] = sinkSummary(job.spec);
  const [store, keep] = checkpointSummary(job.spec, state.info);
  const fact = (label, testid, ...v) => [h('dt', { text: label }), h('dd', { 'data-testid': testid }, ...v)];
  replace($('overview-region'), h('dl', { class: 'facts' },
    fact('Trigger', 'job-trigger', triggerText(job.spec)),
    fact('Source', 'job-source', `${srcKind}${srcNames ? `: ${srcNames}` : ''}`),
    fact('Sink', 'job-sink', `${sinkKind}${sinkTarget ? `: ${sinkTarget}` : ''}`),
    fact('Checkpoints', 'job-checkpoint', store, h('span', { class: 'sub muted', text: ` · keeps the last ${keep} batches` })),
    fact('Last batch', 'job-last-batch', lastBatchText(job.lastProgress)),
    stateText(job.lastProgress) ? fact('State store', 'job-state-store', stateText(job.lastProgress)) : null,
    eventTimeText(job.lastProgress) ? fact('Event time', 'job-event-time', eventTimeText(job.lastProgress)) : null,
    fact('Last committed', 'job-last-committed', has(job.lastCommittedBatch) && num(job.lastCommittedBatch) >= 0 ? `#${num(job.lastCommittedBatch)}` : '—'),
    fact('Created', 'job-created', timeEl(when(job.createTime), fmtTime(when(job.createTime)))),
    fact('Updated', 'job-updated', timeEl(when(job.updateTime)))));
}

// --------------------------------------------------------------------- charts

const CHART_H = 180;
const PAD = { l: 52, r: 12, t: 10, b: 26 };

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function plotWidth(id) {
  const el = $(`${id}-plot`);
  const w = el ? el.clientWidth : 0;
  return Math.max(240, Math.round(w || 560));
}

// frame draws the axes, grid and labels and returns the scales.
function frame(svg, w, n, ymax, fmtY, first, last) {
  const x0 = PAD.l;
  const x1 = w - PAD.r;
  const y0 = CHART_H - PAD.b;
  const y1 = PAD.t;
  const y = (v) => y0 - (v / ymax) * (y0 - y1);
  for (const f of [0, 0.5, 1]) {
    const yy = y(ymax * f);
    svg.append(s('line', { class: f === 0 ? 'axis' : 'gridline', x1: x0, x2: x1, y1: yy, y2: yy }));
    svg.append(s('text', { x: x0 - 6, y: yy + 4, 'text-anchor': 'end', text: fmtY(ymax * f) }));
  }
  svg.append(s('text', { x: x0, y: CHART_H - 6, 'text-anchor': 'start', text: `#${first}` }));
  if (n > 1) svg.append(s('text', { x: x1, y: CHART_H - 6, 'text-anchor': 'end', text: `#${last}` }));
  svg.append(s('text', { x: (x0 + x1) / 2, y: CHART_H - 6, 'text-anchor': 'middle', text: 'batch' }));
  const step = (x1 - x0) / Math.max(n, 1);
  return { x0, x1, y0, y1, y, step };
}

function svgRoot(w, label, testid) {
  return s('svg', {
    viewBox: `0 0 ${w} ${CHART_H}`, width: w, height: CHART_H, role: 'img', 'aria-label': label,
    'data-testid': testid, focusable: 'false',
  });
}

function lineChart(id, title, points, cls, unit) {
  const w = plotWidth(id);
  const n = points.length;
  const vals = points.map((p) => p.v);
  const ymax = niceMax(Math.max(...vals, 0) * 1.05);
  const lastV = n ? vals[n - 1] : 0;
  const avg = n ? vals.reduce((a, b) => a + b, 0) / n : 0;
  const svg = svgRoot(w, `${title} over ${n} batches: latest ${fmtNum(lastV)} ${unit}, average ${fmtNum(avg)}, max ${fmtNum(Math.max(...vals, 0))}.`, `${id}-svg`);
  svg.dataset.points = n;
  svg.dataset.lastBatch = n ? points[n - 1].batch : '';
  const f = frame(svg, w, n, ymax, fmtNum, n ? points[0].batch : '', n ? points[n - 1].batch : '');
  const x = (i) => f.x0 + f.step * (i + 0.5);
  if (n) {
    const d = points.map((p, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${f.y(p.v).toFixed(1)}`).join('');
    svg.append(s('path', { class: `area ${cls}`, d: `${d}L${x(n - 1).toFixed(1)},${f.y0}L${x(0).toFixed(1)},${f.y0}Z` }));
    svg.append(s('path', { class: `line ${cls}`, d }));
    points.forEach((p, i) => {
      svg.append(s('circle', {
        class: `pt ${cls}`, cx: x(i).toFixed(1), cy: f.y(p.v).toFixed(1), r: n > 60 ? 1.8 : 2.8,
        'data-testid': 'point', dataset: { batch: p.batch, value: p.v },
      }, s('title', { text: `batch #${p.batch}: ${fmtNum(p.v)} ${unit}` })));
    });
  }
  setText($(`${id}-value`), n ? `${fmtNum(lastV)} ${unit} · avg ${fmtNum(avg)}` : '');
  replace($(`${id}-plot`), n ? svg : h('p', { class: 'nodata', text: 'No batches yet.' }));
}

function barChart(id, title, points, unit) {
  const w = plotWidth(id);
  const n = points.length;
  const vals = points.map((p) => p.v);
  const ymax = niceMax(Math.max(...vals, 0));
  const lastV = n ? vals[n - 1] : 0;
  const svg = svgRoot(w, `${title} over ${n} batches: latest ${fmtInt(lastV)} ${unit}, max ${fmtInt(Math.max(...vals, 0))}.`, `${id}-svg`);
  svg.dataset.points = n;
  svg.dataset.lastBatch = n ? points[n - 1].batch : '';
  const f = frame(svg, w, n, ymax, fmtNum, n ? points[0].batch : '', n ? points[n - 1].batch : '');
  const bw = Math.max(1, f.step * 0.7);
  points.forEach((p, i) => {
    const y = f.y(p.v);
    svg.append(s('rect', {
      class: 'bar rows', x: (f.x0 + f.step * i + (f.step - bw) / 2).toFixed(1), y: y.toFixed(1), width: bw.toFixed(1),
      height: Math.max(0, f.y0 - y).toFixed(1), 'data-testid': 'point', dataset: { batch: p.batch, value: p.v },
    }, s('title', { text: `batch #${p.batch}: ${fmtInt(p.v)} ${unit}` })));
  });
  setText($(`${id}-value`), n ? `${fmtInt(lastV)} ${unit}` : '');
  replace($(`${id}-plot`), n ? svg : h('p', { class: 'nodata', text: 'No batches yet.' }));
}

function durationChart(id, progress) {
  const w = plotWidth(id);
  const n = progress.length;
  const rows = progress.map((b) => {
    const d = b.durationMs || {};
    const parts = PHASES.map((p) => num(d[p]));
    const sum = parts.reduce((a, c) => a + c, 0);
    return { batch: num(b.batchId), parts, total: Math.max(num(d.total), sum) };
  });
  const ymax = niceMax(Math.max(0, ...rows.map((r) => r.total)));
  const lastT = n ? rows[n - 1].total : 0;
  const avg = n ? rows.reduce((a, r) => a + r.total, 0) / n : 0;
  const svg = svgRoot(w, `Batch duration over ${n} batches, stacked by phase: latest ${fmtMs(lastT)}, average ${fmtMs(avg)}.`, `${id}-svg`);
  svg.dataset.points = n;
  svg.dataset.lastBatch = n ? rows[n - 1].batch : '';
  const f = frame(svg, w, n, ymax, fmtMsShort, n ? rows[0].batch : '', n ? rows[n - 1].batch : '');
  const bw = Math.max(1, f.step * 0.7);
  rows.forEach((r, i) => {
    const g = s('g', { 'data-testid': 'point', dataset: { batch: r.batch, value: r.total } },
      s('title', { text: `batch #${r.batch}: ${fmtMs(r.total)} (${PHASES.map((p, k) => `${p} ${fmtMs(r.parts[k])}`).join(', ')})` }));
    let acc = 0;
    PHASES.forEach((p, k) => {
      const v = r.parts[k];
      if (v <= 0) return;
      const yTop = f.y(acc + v);
      const yBot = f.y(acc);
      acc += v;
      g.append(s('rect', {
        class: `s-${p}`, x: (f.x0 + f.step * i + (f.step - bw) / 2).toFixed(1), y: yTop.toFixed(1), width: bw.toFixed(1),
        height: Math.max(0, yBot - yTop).toFixed(1), dataset: { phase: p, value: v },
      }));
    });
    svg.append(g);
  });
  setText($(`${id}-value`), n ? `${fmtMs(lastT)} · avg ${fmtMs(avg)}` : '');
  const legend = h('ul', { class: 'legend', 'aria-label': 'Phases' },
    PHASES.map((p) => h('li', {}, s('svg', { viewBox: '0 0 10 10', 'aria-hidden': 'true' }, s('rect', { class: `s-${p}`, width: 10, height: 10, rx: 2 })), p)));
  replace($(`${id}-plot`), n ? [svg, legend] : h('p', { class: 'nodata', text: 'No batches yet.' }));
}

function renderCharts(progress) {
  const pts = (f) => progress.map((b) => ({ batch: num(b.batchId), v: f(b) }));
  lineChart('chart-input-rate', 'Input rate', pts((b) => num(b.inputRowsPerSecond)), 'rate', 'rows/s');
  lineChart('chart-process-rate', 'Process rate', pts((b) => num(b.processedRowsPerSecond)), 'proc', 'rows/s');
  barChart('chart-input-rows', 'Input rows', pts((b) => num(b.numInputRows)), 'rows');
  durationChart('chart-duration', progress);
}

// ----------------------------------------------------------------- lag, tasks

function renderLag(last) {
  const region = $('lag-region');
  if (!last) {
    setText($('lag-sub'), '');
    replace(region, h('p', { class: 'empty', text: 'No batch yet: lag is known after the first batch.' }));
    return;
  }
  setText($('lag-sub'), `after batch #${num(last.batchId)}`);
  const m = last.metrics || {};
  const lagKeys = Object.keys(m).filter((k) => /behind/i.test(k)).sort();
  const facts = lagKeys.map((k) => {
    const ms = /ms/i.test(k) || /millis/i.test(k);
    return [h('dt', { text: k }), h('dd', { 'data-testid': `metric-${k}`, text: ms ? fmtMs(m[k]) : `${fmtInt(m[k])} records` })];
  });
  const total = totalLag(last);
  const parts = [...(last.partitions || [])].sort((a, b) => String(a.partition).localeCompare(String(b.partition), undefined, { numeric: true }));
  const lags = parts.map(lagOf);
  const hasRec = lags.some((l) => l.rec !== null);
  const hasMs = lags.some((l) => l.ms !== null);
  const maxRec = Math.max(0, ...lags.map((l) => l.rec ?? 0));
  const maxMs = Math.max(0, ...lags.map((l) => l.ms ?? 0));
  const scale = hasRec ? (l) => (maxRec ? (l.rec ?? 0) / maxRec : 0) : (l) => (maxMs ? (l.ms ?? 0) / maxMs : 0);
  const bar = (frac, label) => s('svg', { viewBox: '0 0 100 10', preserveAspectRatio: 'none', role: 'img', 'aria-label': label },
    s('rect', { class: 'bar lag', x: 0, y: 0, height: 10, width: (Math.max(frac, 0) * 100).toFixed(1) }));
  const rows = parts.map((p, i) => {
    const l = lags[i];
    return h('tr', { 'data-testid': 'partition-row', dataset: { partition: p.partition, records: l.rec ?? '', ms: l.ms ?? '' } },
      h('th', { scope: 'row', class: 'mono', text: p.partition }),
      hasRec ? h('td', { class: 'num', 'data-testid': 'lag-records', text: l.rec === null ? '—' : fmtInt(l.rec) }) : null,
      hasMs ? h('td', { class: 'num', 'data-testid': 'lag-ms', text: l.ms === null ? '—' : fmtMs(l.ms) }) : null,
      (hasRec || hasMs) ? h('td', { class: 'bar-cell' }, bar(scale(l), `${Math.round(scale(l) * 100)}% of the largest lag`)) : null,
      h('td', { class: 'num', text: fmtInt(p.records) }),
      h('td', { class: 'mono', text: p.executor || '—' }));
  });
  const table = parts.length
    ? h('div', { class: 'scroll' }, h('table', { id: 'partitions-table', 'data-testid': 'partitions-table' },
      h('caption', { class: 'visually-hidden', text: 'Lag per partition or shard after the last batch' }),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', text: 'Partition / shard' }),
        hasRec ? h('th', { scope: 'col', class: 'num', text: 'Behind (records)' }) : null,
        hasMs ? h('th', { scope: 'col', class: 'num', text: 'Behind (time)' }) : null,
        (hasRec || hasMs) ? h('th', { scope: 'col', text: '' }) : null,
        h('th', { scope: 'col', class: 'num', text: 'Read in batch' }),
        h('th', { scope: 'col', text: 'Executor' }))),
      h('tbody', {}, rows)))
    : h('p', { class: 'empty', text: 'The last batch read no partition.' });
  replace(region,
    h('dl', { class: 'facts', 'data-testid': 'lag-total' },
      h('dt', { text: 'Total' }), h('dd', { 'data-testid': 'lag-total-value', text: lagText(total) }),
      facts),
    table,
    parts.length && !hasRec && !hasMs ? h('p', { class: 'hint', text: 'The source reports no lag per partition; the totals above come from the batch plan.' }) : null,
    parts.length ? h('p', { class: 'hint', text: 'Partitions with a task in the last batch; a partition with nothing new has no task.' }) : null);
}

function renderTasks(progress) {
  const region = $('tasks-region');
  const recent = progress.slice(-TASK_BATCHES).reverse();
  const all = recent.flatMap((b) => (b.partitions || []).map((p) => ({ b, p })));
  const shown = all.slice(0, MAX_TASK_ROWS);
  setText($('tasks-sub'), recent.length ? `of the last ${recent.length} ${recent.length === 1 ? 'batch' : 'batches'}${shown.length < all.length ? ` (first ${shown.length} of ${all.length})` : ''}` : '');
  if (!shown.length) {
    replace(region, h('p', { class: 'empty', text: 'No tasks yet.' }));
    return;
  }
  replace(region, h('table', { id: 'tasks-table', 'data-testid': 'tasks-table' },
    h('caption', { class: 'visually-hidden', text: 'Tasks of the last batches' }),
    h('thead', {}, h('tr', {}, ['Batch', 'Partition', 'Executor', 'Duration', 'Records', 'Attempts', 'Range'].map((c) =>
      h('th', { scope: 'col', class: ['Duration', 'Records', 'Attempts'].includes(c) ? 'num' : null, text: c })))),
    h('tbody', {}, shown.map(({ b, p }) => {
      const attempts = num(p.attempts) || 1;
      return h('tr', { 'data-testid': 'task-row', dataset: { batch: num(b.batchId), partition: p.partition, attempts } },
        h('td', { text: `#${num(b.batchId)}` }),
        h('td', { class: 'mono', text: p.partition }),
        h('td', { class: 'mono', text: p.executor || '—' }),
        h('td', { class: 'num', text: has(p.durationMs) ? fmtMs(p.durationMs) : '—' }),
        h('td', { class: 'num', text: fmtInt(p.records) }),
        h('td', { class: attempts > 1 ? 'num retried' : 'num', text: attempts > 1 ? `${attempts} (retried)` : String(attempts) }),
        h('td', { class: 'mono', title: `${p.start} → ${p.end}`, text: `${clip(p.start, 24)} → ${clip(p.end, 24)}` }));
    }))));
}

// renderErrors lists the restart in progress, then the job's recent
// distinct errors (Job.recentErrors, kept by the leader), newest first.
function renderErrors(job) {
  const region = $('errors-region');
  const items = [];
  const r = job.restart;
  if (r && (r.cause || num(r.attempt))) {
    const next = when(r.nextAttemptTime);
    items.push(h('li', { 'data-testid': 'error-restart' },
      h('strong', { text: `Restart attempt ${num(r.attempt)}` }),
      next ? h('span', { class: 'when' }, 'next attempt ', timeEl(next, `${fmtTime(next)} (${fmtAgo(next)})`)) : null,
      r.cause ? h('div', { class: 'error-text', text: r.cause }) : null));
  }
  const recent = Array.isArray(job.recentErrors) ? job.recentErrors.filter((e) => has(e?.message)) : [];
  for (const e of recent.slice().reverse()) {
    const at = when(e.time);
    const count = num(e.count);
    items.push(h('li', { 'data-testid': 'error-recent' },
      h('span', { class: 'when' }, at ? timeEl(at, `${fmtTime(at)} (${fmtAgo(at)})`) : '', count > 1 ? ` · seen ${count} times in a row` : ''),
      h('div', { class: 'error-text', text: e.message })));
  }
  if (job.lastError && job.lastError !== r?.cause && !recent.some((e) => e.message === job.lastError)) {
    items.push(h('li', { 'data-testid': 'error-last' }, h('strong', { text: 'Last error' }), h('div', { class: 'error-text', text: job.lastError })));
  }
  replace(region, items.length
    ? h('ul', { class: 'errors' }, items)
    : h('p', { class: 'empty', 'data-testid': 'no-errors', text: 'No errors.' }));
}

// -------------------------------------------------------------- executors page

function renderExecutors(data) {
  const execs = [...(data.executors || [])].sort((a, b) => String(a.id).localeCompare(String(b.id), undefined, { numeric: true }));
  const slots = execs.reduce((a, e) => a + num(e.slots), 0);
  const running = execs.reduce((a, e) => a + num(e.running), 0);
  setText($('executors-summary'), `${execs.length} ${execs.length === 1 ? 'executor' : 'executors'} · ${running} of ${slots} slots busy`);
  const region = $('executors-region');
  if (!execs.length) {
    replace(region, h('p', { class: 'empty', 'data-testid': 'no-executors', text: 'No executor is connected. Start one with sluice-executor --driver <address>.' }));
    return;
  }
  const cols = [['Executor', ''], ['Slots', 'num'], ['Running', 'num'], ['Last heartbeat', ''], ['Connected', ''], ['Completed', 'num'], ['Failed', 'num']];
  replace(region, h('table', { id: 'executors-table', class: 'cards', 'data-testid': 'executors-table' },
    h('caption', { class: 'visually-hidden', text: 'Executors connected to the driver' }),
    h('thead', {}, h('tr', {}, cols.map(([c, cls]) => h('th', { scope: 'col', class: cls || null, text: c })))),
    h('tbody', {}, execs.map((e) => {
      const td = cardCell;
      return h('tr', { 'data-testid': 'executor-row', dataset: { executor: e.id } },
        td('Executor', {}, h('span', { class: 'mono', text: e.id }), e.address ? h('span', { class: 'sub mono', text: e.address }) : null),
        td('Slots', { class: 'num', 'data-testid': 'executor-slots' }, fmtInt(e.slots)),
        td('Running', { class: 'num', 'data-testid': 'executor-running' }, fmtInt(e.running)),
        td('Last heartbeat', { 'data-testid': 'executor-heartbeat' }, timeEl(when(e.lastHeartbeatTime))),
        td('Connected', {}, timeEl(when(e.connectTime))),
        td('Completed', { class: 'num', 'data-testid': 'executor-completed' }, fmtInt(e.tasksCompleted)),
        td('Failed', { class: num(e.tasksFailed) ? 'num retried' : 'num', 'data-testid': 'executor-failed' }, fmtInt(e.tasksFailed)));
    }))));
}

// ----------------------------------------------------------------------- start

function start() {
  initDialogs();
  window.addEventListener('hashchange', () => onRoute(false));
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) {
      clearTimeout(state.timer);
      state.timer = 0;
      setPoll('paused');
      setLive('paused');
    } else {
      refresh();
    }
  });
  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (state.data) PAGES[state.route.page].render(state.data, state.route);
    }, 150);
  });
  onRoute(true);
}

start();
