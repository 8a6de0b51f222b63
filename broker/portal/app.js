// qdesk portal: log in, list my desktops, power them, fetch a console file
// or open the browser console.
// Plain JavaScript, no build step. Every POST carries X-Qdesk: 1 (the
// broker refuses POSTs without it: a cross-site form cannot add it).
'use strict';

const REFRESH_MS = 2000;
let refreshTimer = null;
let rdpAvailable = false;
const busy = new Set();		// desktops with an action in flight

const $ = (id) => document.getElementById(id);

async function api(method, path, body, background) {
  const opts = { method, credentials: 'same-origin', headers: {} };
  // The periodic refresh is not the user: it must not keep the session up.
  if (background) opts.headers['X-Qdesk-Background'] = '1';
  if (method === 'POST') {
    opts.headers['X-Qdesk'] = '1';
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body || {});
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    return { status: 0, data: { error: 'The broker cannot be reached: ' +
      'check your network connection.' } };
  }
  let data = null;
  const type = res.headers.get('Content-Type') || '';
  if (type.startsWith('application/json')) {
    try { data = await res.json(); } catch (e) { data = null; }
  }
  return { status: res.status, data, res };
}

function errorText(r, what) {
  const detail = r.data && r.data.error ? r.data.error : '';
  switch (r.status) {
  case 0: return detail;
  case 401: return 'Your session has ended: log in again.';
  case 403: return what + ': not allowed. ' + detail;
  case 404: return what + ': no such desktop.';
  case 409: return what + ': ' + (detail || 'not possible in this state.');
  case 503: return what + ': the desktop service is not reachable right ' +
    'now; try again in a moment.';
  default: return what + ' failed' + (detail ? ': ' + detail : '.');
  }
}

function showLogin(message) {
  stopRefresh();
  $('desktops-view').hidden = true;
  $('who').hidden = true;
  $('login-view').hidden = false;
  $('login-error').textContent = message || '';
  $('password').value = '';
  $('cards').replaceChildren();
  $('user').focus();
}

function showDesktops(me) {
  $('login-view').hidden = true;
  $('desktops-view').hidden = false;
  $('who').hidden = false;
  $('who-name').textContent = me.name && me.name !== me.login ?
    me.name + ' (' + me.login + ')' : me.login;
  rdpAvailable = !!me.rdp;
  $('rdp-hint').hidden = !rdpAvailable;
  refresh();
  startRefresh();
}

function startRefresh() {
  stopRefresh();
  refreshTimer = setInterval(() => refresh(true), REFRESH_MS);
}

function stopRefresh() {
  if (refreshTimer !== null) clearInterval(refreshTimer);
  refreshTimer = null;
}

async function login(ev) {
  ev.preventDefault();
  const user = $('user').value.trim();
  const password = $('password').value;
  const err = $('login-error');
  if (!user || !password) {
    err.textContent = 'Enter your user name and password.';
    return;
  }
  $('login-button').disabled = true;
  err.textContent = '';
  const r = await api('POST', '/api/login', { user, password });
  $('login-button').disabled = false;
  if (r.status === 200) {
    $('password').value = '';
    showDesktops(r.data);
  } else if (r.status === 401) {
    err.textContent = 'Wrong user name or password.';
  } else if (r.status === 429) {
    const wait = r.res && r.res.headers.get('Retry-After');
    err.textContent = 'Too many failed attempts: logging in is locked' +
      (wait ? ' for ' + wait + ' s' : ' for a while') +
      '. Try again then, or ask your administrator.';
  } else {
    err.textContent = errorText(r, 'Login');
  }
}

async function logout() {
  await api('POST', '/api/logout');
  showLogin('You have logged out.');
}

function stateClass(state) {
  return 'state state-' + String(state || 'unknown').replace(/[^a-z]/g, '');
}

function makeButton(label, cls, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  if (cls) b.className = cls;
  b.addEventListener('click', onClick);
  return b;
}

function makeCard(d) {
  const card = document.createElement('article');
  card.className = 'card';
  card.dataset.name = d.name;
  const head = document.createElement('div');
  head.className = 'card-head';
  const h = document.createElement('h3');
  h.textContent = d.name;
  const st = document.createElement('span');
  st.className = 'state';
  head.append(h, st);
  const pool = document.createElement('div');
  pool.className = 'pool';
  const actions = document.createElement('div');
  actions.className = 'actions';
  const start = makeButton('Start', '', () => power(d.name, 'start'));
  start.dataset.action = 'start';
  const stop = makeButton('Shut down', 'secondary',
    () => power(d.name, 'shutdown'));
  stop.dataset.action = 'shutdown';
  const spice = makeButton('Connect (SPICE)', '', () => connectSpice(d.name));
  spice.dataset.action = 'spice';
  const rdp = makeButton('Connect (RDP)', 'secondary',
    () => connectRdp(d.name));
  rdp.dataset.action = 'rdp';
  const browser = makeButton('Open in browser', 'secondary',
    () => openBrowser(d.name));
  browser.dataset.action = 'browser';
  actions.append(start, stop, spice, rdp, browser);
  const msg = document.createElement('p');
  msg.className = 'msg';
  msg.setAttribute('role', 'status');
  card.append(head, pool, actions, msg);
  return card;
}

function updateCard(card, d) {
  const st = card.querySelector('.state');
  st.textContent = d.state || 'unknown';
  st.className = stateClass(d.state);
  card.dataset.state = d.state || '';
  card.querySelector('.pool').textContent = d.pool ? 'Pool ' + d.pool : '';
  const running = d.state === 'running' || d.state === 'paused';
  const inFlight = busy.has(d.name);
  const btn = (a) => card.querySelector('[data-action="' + a + '"]');
  btn('start').disabled = inFlight ||
    !(d.state === 'stopped' || d.state === 'crashed');
  btn('shutdown').disabled = inFlight || d.state !== 'running';
  btn('spice').disabled = inFlight || !running || d.spice === false;
  btn('rdp').disabled = !rdpAvailable || !running;
  btn('browser').disabled = inFlight || d.state !== 'running';
  btn('rdp').title = rdpAvailable ? '' :
    'RDP access is not available yet';
}

function cardMessage(name, text, isError) {
  const card = document.querySelector('.card[data-name="' + name + '"]');
  if (!card) return;
  const m = card.querySelector('.msg');
  m.textContent = text;
  m.className = isError ? 'msg error' : 'msg';
}

async function refresh(background) {
  const r = await api('GET', '/api/desktops', null, background);
  if (r.status === 401) {
    showLogin('Your session has ended: log in again.');
    return;
  }
  if (r.status !== 200 || !Array.isArray(r.data)) {
    $('desk-error').textContent = errorText(r, 'Listing your desktops');
    return;
  }
  $('desk-error').textContent = '';
  const cards = $('cards');
  const seen = new Set();
  for (const d of r.data) {
    seen.add(d.name);
    let card = cards.querySelector('.card[data-name="' + d.name + '"]');
    if (!card) {
      card = makeCard(d);
      cards.append(card);
    }
    updateCard(card, d);
  }
  for (const card of Array.from(cards.children)) {
    if (!seen.has(card.dataset.name)) card.remove();
  }
  $('empty').hidden = r.data.length > 0;
}

async function power(name, action) {
  const words = { start: ['Starting…', 'Start'],
    shutdown: ['Shutting down…', 'Shut down'] }[action];
  busy.add(name);
  cardMessage(name, words[0], false);
  refresh();
  const r = await api('POST', '/api/desktops/' + encodeURIComponent(name) +
    '/' + action);
  busy.delete(name);
  if (r.status === 200) {
    cardMessage(name, '', false);
  } else if (r.status === 401) {
    showLogin('Your session has ended: log in again.');
    return;
  } else {
    cardMessage(name, errorText(r, words[1]), true);
  }
  refresh();
}

// Fetch a console file (.vv or .rdp) and hand it to the browser as a
// download; errors stay on the card, in words.
async function download(name, ext, hint) {
  cardMessage(name, 'Preparing the console…', false);
  let res;
  try {
    res = await fetch('/api/desktops/' + encodeURIComponent(name) +
      '/console.' + ext, { credentials: 'same-origin' });
  } catch (e) {
    cardMessage(name, 'The broker cannot be reached.', true);
    return;
  }
  if (res.status !== 200) {
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (res.status === 401) {
      showLogin('Your session has ended: log in again.');
      return;
    }
    cardMessage(name, errorText({ status: res.status, data }, 'Connect'),
      true);
    return;
  }
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name + '.' + ext;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  cardMessage(name, 'Downloaded ' + name + '.' + ext + ': ' + hint, false);
}

function connectSpice(name) {
  download(name, 'vv', 'open it with remote-viewer within a minute.');
}

function connectRdp(name) {
  download(name, 'rdp', 'open it with your RDP client (mstsc, Remmina, ' +
    'xfreerdp) and log in with your qdesk password.');
}

// The browser console opens in its own tab (console.html asks for the
// WebSocket ticket itself).
function openBrowser(name) {
  window.open('/console.html?desktop=' + encodeURIComponent(name), '_blank',
    'noopener');
}

async function init() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  const r = await api('GET', '/api/me');
  if (r.status === 200) showDesktops(r.data);
  else showLogin('');
}

document.addEventListener('DOMContentLoaded', init);
