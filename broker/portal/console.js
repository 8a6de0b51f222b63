// qdesk browser console: /console.html?desktop=NAME. Asks the API for a
// WebSocket address with a one-time ticket, then lets noVNC (Debian's
// novnc, served by the broker under /novnc/) speak RFB over it. The page's
// state is on <body data-state>: starting, connecting, connected,
// disconnected or error.
import RFB from '/novnc/core/rfb.js';

const $ = (id) => document.getElementById(id);
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
let rfb = null;

function setState(state, text) {
  document.body.dataset.state = state;
  $('status').textContent = text;
  $('reconnect').hidden = !(state === 'disconnected' || state === 'error');
  $('cad').disabled = state !== 'connected';
}

async function ticket(name) {
  let res;
  try {
    res = await fetch('/api/desktops/' + encodeURIComponent(name) +
      '/console', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'X-Qdesk': '1', 'Content-Type': 'application/json' },
      body: JSON.stringify({ type: 'browser' }),
    });
  } catch (e) {
    return { error: 'The broker cannot be reached: check your network.' };
  }
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (res.status === 200 && data && typeof data.ws === 'string') {
    return { ws: data.ws };
  }
  const detail = data && data.error ? data.error : 'HTTP ' + res.status;
  switch (res.status) {
  case 401: return { error: 'Your session has ended: log in at the portal.' };
  case 403: return { error: 'This desktop is not yours.' };
  case 409: return { error: 'The desktop is not running: start it from ' +
    'the portal.' };
  default: return { error: 'The console cannot open: ' + detail };
  }
}

async function connect(name) {
  if (rfb) {
    rfb.disconnect();
    rfb = null;
  }
  $('screen').replaceChildren();
  setState('connecting', 'Connecting…');
  const t = await ticket(name);
  if (t.error) {
    setState('error', t.error);
    return;
  }
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  try {
    rfb = new RFB($('screen'), scheme + location.host + t.ws,
      { wsProtocols: ['binary'] });
  } catch (e) {
    setState('error', 'The console cannot open: ' + e.message);
    return;
  }
  rfb.scaleViewport = false;
  rfb.resizeSession = false;
  rfb.addEventListener('connect', () => {
    setState('connected', 'Connected to ' + name);
    rfb.focus();
  });
  rfb.addEventListener('disconnect', (e) => {
    setState('disconnected', e.detail && e.detail.clean ?
      'Disconnected: the desktop closed the console.' :
      'The connection to the desktop was lost.');
  });
  rfb.addEventListener('securityfailure', () => {
    setState('error', 'The desktop refused the console.');
  });
}

function init() {
  const name = new URLSearchParams(location.search).get('desktop') || '';
  if (!NAME_RE.test(name)) {
    setState('error', 'No desktop named in the address ' +
      '(console.html?desktop=NAME).');
    return;
  }
  document.title = name + ' — qdesk';
  $('title').textContent = name;
  $('reconnect').addEventListener('click', () => connect(name));
  $('cad').addEventListener('click', () => { if (rfb) rfb.sendCtrlAltDel(); });
  connect(name);
}

init();
