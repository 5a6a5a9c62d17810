/**
 * The Airlock panel in the webview: renders the model (state.ts) with VS Code's own look
 * (@vscode-elements/elements, codicons, theme variables) and sends what a person clicks
 * to the extension (messages.ts). All text from the runtime is set as text, never as
 * markup: host names, process names and an agent's reasons are untrusted.
 *
 * The network table is virtualized (only the rows in view exist in the DOM), so 10 000
 * rows and 1 000 new ones a second stay smooth; it follows new rows while scrolled to
 * the bottom. The filters and that choice survive hiding the panel and reloading the
 * window (the webview's saved state).
 */
import '@vscode-elements/elements/dist/bundled.js';
import type { FromPanel, ToPanel } from './messages';
import { formatBytes, formatDuration, NetFilter, NetRow, PanelModel, SecretRow, SessionRow } from './state';

interface VsCodeApi {
  postMessage(m: FromPanel): void;
  getState(): SavedState | undefined;
  setState(s: SavedState): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

interface SavedState {
  filter: NetFilter;
  follow: boolean;
}

const vscode = acquireVsCodeApi();
const model = new PanelModel();
const saved = vscode.getState() ?? { filter: { deniedOnly: false }, follow: true };
model.setFilter(saved.filter);
let follow = saved.follow;
const ROW_HEIGHT = 24;
const ALLOW_MINUTES = 15;

// ---------------------------------------------------------------------------------------
// Small DOM helpers (text only: never innerHTML with data)

type Attrs = Record<string, string | number | boolean | undefined>;
function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs, ...children: (Node | string | undefined)[]): HTMLElementTagNameMap[K];
function h(tag: string, attrs?: Attrs, ...children: (Node | string | undefined)[]): HTMLElement;
function h(tag: string, attrs: Attrs = {}, ...children: (Node | string | undefined)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== undefined) el.append(c);
  return el;
}
const icon = (name: string, label?: string): HTMLElement => h('span', { class: `codicon codicon-${name}`, 'aria-hidden': label ? undefined : 'true', 'aria-label': label, role: label ? 'img' : undefined });
function button(text: string, onClick: () => void, attrs: Attrs = {}): HTMLElement {
  const b = h('vscode-button', attrs, text);
  b.addEventListener('click', onClick);
  return b;
}
const send = (m: FromPanel): void => vscode.postMessage(m);
const short = (id: string): string => id.slice(0, 8);
// One formatter each, made once: toLocaleTimeString builds a new one per call, and the
// table formats two times per row it draws (a flood redraws rows many times a second).
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const time = (iso: string): string => timeFormat.format(Date.parse(iso));

// ---------------------------------------------------------------------------------------
// Layout

const app = document.getElementById('app')!;
const conn = h('span', { class: 'conn', role: 'status' });
const summary = h('span', { class: 'summary' });
const sessionsBox = h('div', { class: 'sessions', role: 'list', 'aria-label': 'Live sessions' });
const sessionsCount = h('vscode-badge', { variant: 'counter' }, '0');
const requestsBox = h('div', { class: 'requests', role: 'list', 'aria-label': 'Pending access requests' });
const requestsCount = h('vscode-badge', { variant: 'counter' }, '0');
const requestsSection = h('section', { 'aria-labelledby': 'h-requests', class: 'requests-section' },
  h('h2', { id: 'h-requests' }, icon('question'), ' Requests from agents ', requestsCount), requestsBox);
const notice = h('div', { class: 'notice', role: 'status', 'aria-live': 'polite' });

const deniedBox = h('vscode-checkbox', { label: 'Denied only', checked: saved.filter.deniedOnly }) as HTMLElement & { checked: boolean };
const sessionSelect = h('vscode-single-select', { 'aria-label': 'Session', class: 'session-select' }) as HTMLElement & { value: string };
const hostField = h('vscode-textfield', { placeholder: 'Filter by host', 'aria-label': 'Filter by host', value: saved.filter.host ?? '' }) as HTMLElement & { value: string };
hostField.prepend(h('span', { slot: 'content-before', class: 'codicon codicon-search', 'aria-hidden': 'true' }));
const netCount = h('span', { class: 'net-count', 'aria-live': 'off' });
const followBox = h('vscode-checkbox', { label: 'Follow new', checked: follow }) as HTMLElement & { checked: boolean };

const COLUMNS = ['Time', 'Session', 'Destination', 'Request', 'Decision', '', 'Rule', 'Process', 'Bytes ↑/↓', 'Duration'];
const head = h('div', { class: 'grid-row grid-head', role: 'row', 'aria-rowindex': 1 }, ...COLUMNS.map((c) => h('div', { role: 'columnheader', class: 'cell' }, c)));
const spacer = h('div', { class: 'spacer' });
const rowsBox = h('div', { class: 'rows', role: 'rowgroup' });
const viewport = h('div', { class: 'viewport', tabindex: 0, 'aria-label': 'Outbound connections, newest at the bottom; arrow keys move, Enter allows a denied host' }, spacer, rowsBox);
const grid = h('div', { class: 'grid', role: 'grid', 'aria-label': 'Outbound connections', 'aria-rowcount': 1 }, h('div', { role: 'rowgroup' }, head), viewport);

app.append(
  h('header', { class: 'bar' }, h('span', { class: 'title' }, icon('shield'), ' Airlock'), conn, notice, summary),
  h('section', { 'aria-labelledby': 'h-sessions' }, h('h2', { id: 'h-sessions' }, icon('vm'), ' Sessions ', sessionsCount), sessionsBox),
  requestsSection,
  h('section', { 'aria-labelledby': 'h-network', class: 'network' },
    h('h2', { id: 'h-network' }, icon('globe'), ' Network'),
    h('div', { class: 'filters' }, deniedBox, sessionSelect, hostField, followBox, netCount),
    grid),
);

// ---------------------------------------------------------------------------------------
// Sessions, secrets, requests

/**
 * Session cards are drawn once and then updated in place: a flood of connections changes
 * their counts many times a second, and a card rebuilt under the pointer would swallow a
 * click on "Kill" or "Revoke" (and take the keyboard focus with it).
 */
interface CardView {
  el: HTMLElement;
  /** What the card was built from; a change rebuilds it (rare: a label or a lifetime). */
  key: string;
  processes: HTMLElement;
  connections: HTMLElement;
  secretsBox: HTMLElement;
  secrets: Map<string, { el: HTMLElement; key: string; uses: HTMLElement }>;
}
const cards = new Map<string, CardView>();
let selectKey = '';

function renderSessions(): void {
  const list = [...model.sessions.values()].sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  setText(sessionsCount, String(list.length));
  const want: HTMLElement[] = [];
  for (const s of list) {
    const key = JSON.stringify([s.label, s.workspace, s.driver, s.startedAt, s.endsAt]);
    let v = cards.get(s.sessionId);
    if (!v || v.key !== key) cards.set(s.sessionId, (v = sessionCard(s, key)));
    setText(v.processes, `${s.running} running`);
    setText(v.connections, `${s.connections} (${s.denied} denied)`);
    renderSecrets(v, s.sessionId);
    want.push(v.el);
  }
  for (const id of cards.keys()) if (!model.sessions.has(id)) cards.delete(id);
  if (!list.length) want.push(emptySessions);
  placeChildren(sessionsBox, want);
  // The session filter offers the live sessions (and keeps a chosen one that ended);
  // rebuilt only when that list changes (an open dropdown would close).
  const chosen = model.netFilter.sessionId ?? '';
  const ids = new Set(list.map((s) => s.sessionId));
  if (chosen) ids.add(chosen);
  const options = [...ids].map((id) => [id, `${model.sessions.get(id)?.label ?? 'session'} ${short(id)}`] as const);
  const nextKey = JSON.stringify([chosen, options]);
  if (nextKey !== selectKey) {
    selectKey = nextKey;
    sessionSelect.replaceChildren(h('vscode-option', { value: '', selected: chosen === '' }, 'All sessions'),
      ...options.map(([id, label]) => h('vscode-option', { value: id, selected: id === chosen }, label)));
  }
  updateSummary();
  renderCountdowns();
}
const emptySessions = h('p', { class: 'empty' }, 'No live sessions. Open an "Airlock Sandbox" terminal, or route the agent\'s terminal into the sandbox.');

function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/** Makes BOX's children exactly WANT, moving nothing that is already in its place. */
function placeChildren(box: HTMLElement, want: Node[]): void {
  let at = box.firstChild;
  for (const node of want) {
    if (node === at) at = at.nextSibling;
    else box.insertBefore(node, at);
  }
  while (at) {
    const next = at.nextSibling;
    at.remove();
    at = next;
  }
}

function sessionCard(s: SessionRow, key: string): CardView {
  const processes = h('span');
  const connections = h('span');
  const secretsBox = h('div');
  const el = h('article', { class: 'card', role: 'listitem', 'aria-label': `Session ${s.label ?? ''} ${s.sessionId}` },
    h('div', { class: 'card-head' },
      h('span', { class: 'card-title' }, icon('terminal'), ` ${s.label ?? 'session'} `, h('code', {}, short(s.sessionId))),
      h('span', { class: 'card-actions' },
        button('Grant secret…', () => send({ type: 'grant', sessionId: s.sessionId }), { secondary: true, icon: 'key' }),
        button('Kill', () => send({ type: 'kill', sessionId: s.sessionId }), { secondary: true, icon: 'close', 'aria-label': `Kill session ${s.sessionId}` }))),
    h('dl', { class: 'facts' },
      fact('Workspace', s.workspace),
      fact('Driver', s.driver),
      fact('Age', h('span', { 'data-since': s.startedAt })),
      fact('Ends in', h('span', { 'data-until': s.endsAt !== undefined ? new Date(s.endsAt).toISOString() : '' })),
      fact('Processes', processes),
      fact('Connections', connections)),
    secretsBox);
  return { el, key, processes, connections, secretsBox, secrets: new Map() };
}

/** The card's secrets table: rows kept while their grant is the same; use counts updated in place. */
function renderSecrets(v: CardView, sessionId: string): void {
  const list = [...(model.secrets.get(sessionId)?.values() ?? [])];
  const rows: HTMLElement[] = [];
  const next = new Map<string, { el: HTMLElement; key: string; uses: HTMLElement }>();
  for (const x of list) {
    const key = JSON.stringify([x.mode, x.hosts, x.path, x.expiresAt, x.grantedAt]);
    let r = v.secrets.get(x.name);
    if (!r || r.key !== key) r = { key, ...secretRow(x) };
    setText(r.uses, x.mode === 'brokered' ? String(x.uses) : '—');
    next.set(x.name, r);
    rows.push(r.el);
  }
  v.secrets = next;
  if (!rows.length) {
    if (!v.secretsBox.querySelector(':scope > p.empty')) v.secretsBox.replaceChildren(h('p', { class: 'empty' }, 'No secrets granted.'));
    return;
  }
  let body = v.secretsBox.querySelector<HTMLElement>(':scope > table > tbody');
  if (!body) {
    body = h('tbody');
    v.secretsBox.replaceChildren(h('table', { class: 'secrets', 'aria-label': `Secrets of session ${sessionId}` },
      h('thead', {}, h('tr', {}, ...['Secret', 'Mode', 'Hosts', 'Expires in', 'Uses', ''].map((c) => h('th', { scope: 'col' }, c)))),
      body));
  }
  placeChildren(body, rows);
}

function fact(name: string, value: Node | string): DocumentFragment {
  const f = document.createDocumentFragment();
  f.append(h('dt', {}, name), h('dd', {}, value));
  return f;
}

function secretRow(x: SecretRow): { el: HTMLElement; uses: HTMLElement } {
  const uses = h('td');
  const el = h('tr', {},
    h('td', {}, icon('key'), ' ', h('code', {}, x.name)),
    h('td', {}, x.mode),
    h('td', {}, x.hosts?.join(', ') ?? (x.path ?? '')),
    h('td', {}, h('span', { 'data-until': x.expiresAt })),
    uses,
    h('td', {}, button('Revoke', () => send({ type: 'revoke', sessionId: x.sessionId, name: x.name }), { secondary: true, 'aria-label': `Revoke ${x.name}` })));
  return { el, uses };
}

function renderRequests(): void {
  const list = [...model.requests.values()];
  requestsCount.textContent = String(list.length);
  requestsSection.hidden = list.length === 0;
  requestsBox.replaceChildren(...list.map((r) => {
    const minutes = Math.max(1, Math.round((r.requestedTtlSeconds || ALLOW_MINUTES * 60) / 60));
    return h('article', { class: 'card request', role: 'listitem' },
      h('div', { class: 'card-head' },
        h('span', { class: 'card-title' }, icon(r.kind === 'host' ? 'globe' : 'key'), ` ${r.kind === 'host' ? 'Host' : 'Secret'} `, h('code', {}, r.target), ` for session ${short(r.sessionId)}`),
        h('span', { class: 'card-actions' },
          button(`Approve for ${formatDuration(minutes * 60_000)}`, () => send({ type: 'decide', requestId: r.requestId, approve: true, minutes }), { icon: 'check' }),
          button('Deny', () => send({ type: 'decide', requestId: r.requestId, approve: false }), { secondary: true }))),
      h('p', { class: 'reason' }, h('span', { class: 'muted' }, 'The agent says (unverified): '), r.reason));
  }));
}

/** Ages and countdowns tick once a second without rebuilding anything. */
function renderCountdowns(): void {
  const now = Date.now();
  for (const el of document.querySelectorAll<HTMLElement>('[data-since]')) el.textContent = formatDuration(now - Date.parse(el.dataset.since!));
  for (const el of document.querySelectorAll<HTMLElement>('[data-until]')) {
    const until = Date.parse(el.dataset.until!);
    el.textContent = Number.isNaN(until) ? '—' : formatDuration(until - now);
    el.classList.toggle('soon', until - now < 60_000);
  }
}

function updateSummary(): void {
  const denied = model.deniedRecently();
  summary.textContent = `${model.sessions.size} session${model.sessions.size === 1 ? '' : 's'} · ${denied} denied in the last 10 min`;
}

// ---------------------------------------------------------------------------------------
// The network table (virtualized)

let active = -1;
let frame = 0;
/** Redraws the table at the next frame: for what a person does (scroll, keys, filters). */
function scheduleNet(): void {
  frame ||= requestAnimationFrame(() => {
    frame = 0;
    renderNet();
  });
}

/**
 * Redraws for arriving events come at most this often: in a flood each redraw rebuilds
 * every row in view, and at one per frame the page had no time left for a person's click
 * (nor the rest of VS Code, which shares its thread).
 */
const LIVE_REDRAW_MS = 200;
let lastDraw = 0;
let liveTimer = 0;
function scheduleLiveNet(): void {
  if (frame || liveTimer) return;
  const wait = lastDraw + LIVE_REDRAW_MS - performance.now();
  if (wait <= 0) scheduleNet();
  else liveTimer = window.setTimeout(() => {
    liveTimer = 0;
    scheduleNet();
  }, wait);
}

function renderNet(): void {
  lastDraw = performance.now();
  clearTimeout(liveTimer);
  liveTimer = 0;
  const rows = model.visibleNet;
  const total = rows.length;
  grid.setAttribute('aria-rowcount', String(total + 1));
  netCount.textContent = `${total} of ${model.netTotal} connection${model.netTotal === 1 ? '' : 's'}${model.dropped ? ` (${model.dropped} oldest let go)` : ''}`;
  spacer.style.height = `${total * ROW_HEIGHT}px`;
  if (follow) viewport.scrollTop = viewport.scrollHeight;
  const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_HEIGHT) - 10);
  const last = Math.min(total, Math.ceil((viewport.scrollTop + viewport.clientHeight) / ROW_HEIGHT) + 10);
  rowsBox.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
  // Rows already drawn as they are stay the same elements: under a flood the table
  // redraws every frame, and a button replaced between press and release loses the click.
  const now = Date.now();
  const next = new Map<NetRow, { el: HTMLElement; key: string }>();
  const out: HTMLElement[] = [];
  for (let i = first; i < last; i++) {
    const r = rows[i]!;
    const key = `${i}|${i === active}|${r.closed}|${r.bytesUp}|${r.bytesDown}|${r.durationMs}|${r.error}|${model.sessions.has(r.sessionId)}|${model.grantFor(r, now)}`;
    let drawn = drawnRows.get(r);
    if (!drawn || drawn.key !== key) drawn = { el: netRow(r, i), key };
    next.set(r, drawn);
    out.push(drawn.el);
  }
  drawnRows = next;
  placeChildren(rowsBox, out);
}
let drawnRows = new Map<NetRow, { el: HTMLElement; key: string }>();

function netRow(r: NetRow, i: number): HTMLElement {
  const allow = r.decision === 'allow';
  const dest = `${r.host}:${r.port}`;
  const request = r.method ? `${r.method} ${r.path ?? ''}` : r.protocol;
  const bytes = r.closed && allow ? `${formatBytes(r.bytesUp)} / ${formatBytes(r.bytesDown)}` : '';
  const duration = r.durationMs !== undefined ? formatDuration(r.durationMs) : allow && !r.closed ? 'open' : '';
  // The whole row in its tooltip: a narrow panel hides some columns.
  const at = time(r.ts);
  const summary = [at, `session ${short(r.sessionId)}`, dest, request, `${allow ? 'allowed' : 'denied'} by ${r.rule}`, r.process, bytes && `${bytes} up/down`, duration, r.error].filter(Boolean).join(' · ');
  const row = h('div', { class: `grid-row ${allow ? 'allowed' : 'denied'}${i === active ? ' active' : ''}`, role: 'row', 'aria-rowindex': i + 2, 'aria-selected': String(i === active), id: `net-${i}`, title: summary },
    h('div', { role: 'gridcell', class: 'cell' }, at),
    h('div', { role: 'gridcell', class: 'cell' }, h('code', {}, short(r.sessionId))),
    h('div', { role: 'gridcell', class: 'cell dest' }, dest),
    h('div', { role: 'gridcell', class: 'cell' }, request),
    h('div', { role: 'gridcell', class: 'cell decision' }, icon(allow ? 'pass' : 'error'), allow ? ' allowed' : ' denied'),
    h('div', { role: 'gridcell', class: 'cell' }, allowCell(r)),
    h('div', { role: 'gridcell', class: 'cell' }, r.rule),
    h('div', { role: 'gridcell', class: 'cell', title: 'as reported from inside the sandbox' }, r.process ?? ''),
    h('div', { role: 'gridcell', class: 'cell num' }, bytes),
    h('div', { role: 'gridcell', class: 'cell num' }, duration));
  return row;
}

/** Denied rows of a live session offer the grant; once granted, they say until when. */
function allowCell(r: NetRow): HTMLElement | string {
  if (r.decision === 'allow' || !model.sessions.has(r.sessionId)) return '';
  const until = model.grantFor(r);
  if (until) return h('span', { class: 'granted', title: `allowed for this session until ${dateTimeFormat.format(Date.parse(until))}` }, icon('unlock'), ` until ${time(until).slice(0, 5)}`);
  return allowButton(r);
}

function allowButton(r: NetRow): HTMLElement {
  return button(`Allow ${ALLOW_MINUTES} min`, () => allowRow(r), { secondary: true, 'aria-label': `Allow ${r.host}:${r.port} for ${ALLOW_MINUTES} minutes in session ${r.sessionId}` });
}

function allowRow(r: NetRow): void {
  send({ type: 'allow', sessionId: r.sessionId, rule: `${r.host}:${r.port}`, minutes: ALLOW_MINUTES });
}

viewport.addEventListener('scroll', () => {
  const atBottom = viewport.scrollTop + viewport.clientHeight >= viewport.scrollHeight - ROW_HEIGHT;
  if (follow !== atBottom) {
    follow = atBottom;
    followBox.checked = follow;
    persist();
  }
  scheduleNet();
});
/** The active row's state changes at once where its row is drawn (a screen reader reads
 *  aria-activedescendant's target as soon as it moves); the redraw follows a frame later. */
function markActive(on: boolean): void {
  const row = active >= 0 ? document.getElementById(`net-${active}`) : null;
  if (!row) return;
  row.setAttribute('aria-selected', String(on));
  row.classList.toggle('active', on);
}
viewport.addEventListener('keydown', (e) => {
  const n = model.visibleNet.length;
  if (!n) return;
  const page = Math.max(1, Math.floor(viewport.clientHeight / ROW_HEIGHT) - 1);
  const moves: Record<string, number> = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page, Home: -n, End: n };
  if (e.key in moves) {
    e.preventDefault();
    markActive(false);
    active = Math.min(n - 1, Math.max(0, (active < 0 ? n - 1 : active) + moves[e.key]!));
    follow = active === n - 1;
    followBox.checked = follow;
    const top = active * ROW_HEIGHT;
    if (top < viewport.scrollTop) viewport.scrollTop = top;
    else if (top + ROW_HEIGHT > viewport.scrollTop + viewport.clientHeight) viewport.scrollTop = top + ROW_HEIGHT - viewport.clientHeight;
    markActive(true);
    viewport.setAttribute('aria-activedescendant', `net-${active}`);
    scheduleNet();
  } else if (e.key === 'Enter' && active >= 0) {
    const r = model.visibleNet[active];
    if (r && r.decision === 'deny' && model.sessions.has(r.sessionId) && !model.grantFor(r)) allowRow(r);
  }
});

// ---------------------------------------------------------------------------------------
// Filters, state, messages

function persist(): void {
  vscode.setState({ filter: model.netFilter, follow });
}
function applyFilter(): void {
  model.setFilter({ deniedOnly: deniedBox.checked, sessionId: sessionSelect.value || undefined, host: hostField.value });
  active = -1;
  persist();
  scheduleNet();
}
deniedBox.addEventListener('change', applyFilter);
sessionSelect.addEventListener('change', applyFilter);
hostField.addEventListener('input', applyFilter);
followBox.addEventListener('change', () => {
  follow = followBox.checked;
  persist();
  scheduleNet();
});

let noticeTimer = 0;
window.addEventListener('message', (ev: MessageEvent<ToPanel>) => {
  const m = ev.data;
  if (m.type === 'snapshot') {
    model.load(m.snapshot); // keeps the filter in use
    renderSessions();
    renderRequests();
    scheduleNet();
  } else if (m.type === 'events') {
    const c = model.apply(m.events);
    if (c.sessions || c.secrets) renderSessions();
    if (c.requests) renderRequests();
    // A session's end changes its rows too (no "Allow 15 min" for a session gone).
    if (c.net || c.sessions) scheduleLiveNet();
  } else if (m.type === 'connection') {
    conn.replaceChildren(icon(m.state === 'connected' ? 'pass-filled' : m.state === 'connecting' ? 'sync' : 'debug-disconnect'), ` runtime ${m.state}`);
    conn.className = `conn ${m.state}`;
  } else if (m.type === 'notice') {
    notice.textContent = m.text;
    notice.className = `notice ${m.level}`;
    clearTimeout(noticeTimer);
    noticeTimer = window.setTimeout(() => (notice.textContent = ''), 8000);
  }
});
setInterval(() => {
  renderCountdowns();
  updateSummary();
}, 1000);
new ResizeObserver(() => scheduleNet()).observe(viewport);
renderSessions();
renderRequests();
send({ type: 'ready' });
