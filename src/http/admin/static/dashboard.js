// The dapr-outbox dashboard: plain DOM, no framework, no build step. Every value from the server
// goes in as text (textContent), never as markup. Requests are relative to the page, so the
// dashboard works wherever the admin router is mounted.
'use strict';
(function () {
  const STATE_NAMES = { 0: 'Not published', 1: 'In progress', 2: 'Published', 3: 'Failed, retrying' };
  const POLL_MS = 5000;
  const HOUR_MS = 3600 * 1000;

  const $ = (id) => document.getElementById(id);
  const session = { readOnly: true, csrfHeader: 'x-outbox-csrf', next: null, selected: null, samples: [] };

  function showError(message) {
    const el = $('error');
    el.textContent = message || '';
    el.hidden = !message;
  }

  async function api(path, init) {
    const res = await fetch(path, Object.assign({ credentials: 'same-origin', headers: { accept: 'application/json' } }, init));
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (!res.ok) {
      const why = body && body.message ? body.message : res.statusText;
      throw new Error(`${res.status} ${why}${body && body.field ? ` (field ${body.field})` : ''}`);
    }
    return body;
  }

  function mutate(path, body) {
    const headers = { 'content-type': 'application/json', accept: 'application/json' };
    headers[session.csrfHeader] = '1';
    return api(path, { method: 'POST', headers, body: JSON.stringify(body) });
  }

  function stateLabel(row) {
    return row.terminal ? 'Failed, no retry left' : STATE_NAMES[row.state] || String(row.state);
  }

  function stateClass(row) {
    return row.terminal ? 'state-terminal' : `state-${row.state}`;
  }

  function time(ms) {
    if (ms === null || ms === undefined) return '';
    return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
  }

  function age(ms) {
    if (ms === null || ms === undefined) return 'none';
    if (ms < 1000) return `${ms} ms`;
    if (ms < 120000) return `${Math.round(ms / 1000)} s`;
    if (ms < 7200000) return `${Math.round(ms / 60000)} min`;
    return `${Math.round(ms / 3600000)} h`;
  }

  function el(tag, text, className) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (className) e.className = className;
    return e;
  }

  // Counts and the sparkline.
  async function loadStats() {
    const s = await api('stats');
    session.readOnly = s.readOnly === true;
    session.csrfHeader = s.csrfHeader || session.csrfHeader;
    $('read-only').hidden = !session.readOnly;
    for (const key of ['notPublished', 'inProgress', 'published', 'publishedFailed', 'terminalFailed', 'backlog', 'inboxSize']) {
      $(`count-${key}`).textContent = s[key] === null || s[key] === undefined ? '-' : String(s[key]);
    }
    $('count-oldest').textContent = age(s.oldestPendingAgeMs);
    $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
    const now = Date.now();
    session.samples.push({ t: now, v: s.backlog });
    session.samples = session.samples.filter((p) => p.t >= now - HOUR_MS);
    drawSparkline(now);
    showMutations();
  }

  // The x axis runs from the first sample kept (at most an hour ago) to now.
  function drawSparkline(now) {
    const points = session.samples;
    const from = points.length ? Math.min(points[0].t, now - 1000) : now - HOUR_MS;
    const span = Math.max(1, now - from);
    const max = Math.max(1, ...points.map((p) => p.v));
    const coords = points.map((p) => `${(((p.t - from) / span) * 600).toFixed(1)},${(46 - (p.v / max) * 44).toFixed(1)}`);
    // One sample is a flat line, so the line shows from the first poll.
    if (coords.length === 1) coords.unshift(`0,${coords[0].split(',')[1]}`);
    $('spark-line').setAttribute('points', coords.join(' '));
    const minutes = Math.round(span / 60000);
    $('spark-range').textContent = `${minutes < 1 ? 'under a minute' : `${minutes} min`}: max ${max}, now ${points.length ? points[points.length - 1].v : 0}`;
  }

  function showMutations() {
    for (const b of document.querySelectorAll('.mutation')) {
      if (b.id === 'detail-republish' || b.id === 'detail-delete') continue;
      b.hidden = session.readOnly;
    }
    renderDetailActions();
  }

  // The events table.
  function filterParams() {
    const p = new URLSearchParams();
    const state = $('filter-state').value;
    const topic = $('filter-topic').value.trim();
    const q = $('filter-q').value.trim();
    if (state) p.set('state', state);
    if (topic) p.set('topic', topic);
    if (q) p.set('q', q);
    return p;
  }

  // A filtered page reads a bounded window of the table and may come back short with more to
  // read; the page asks on, a few windows at most per click, until it has a page of rows.
  const PAGE_ROWS = 50;
  const WINDOWS_PER_CLICK = 10;

  // Each load supersedes the ones before it (a filter changed while a page was on its way).
  let loads = 0;

  async function loadEvents(more) {
    const token = ++loads;
    let next = more ? session.next : null;
    const rows = [];
    for (let i = 0; i < WINDOWS_PER_CLICK; i++) {
      const p = filterParams();
      if (next) p.set('after', next);
      const page = await api(`events?${p}`);
      if (token !== loads) return;
      rows.push(...page.events);
      next = page.next;
      if (next === null || rows.length >= PAGE_ROWS) break;
    }
    const body = $('events-body');
    if (!more) body.textContent = '';
    for (const row of rows) body.appendChild(eventRow(row));
    session.next = next;
    $('more').hidden = next === null;
    $('events-empty').hidden = body.children.length > 0 || next !== null;
  }

  function eventRow(row) {
    const tr = el('tr');
    tr.dataset.id = row.id;
    tr.appendChild(el('td', row.id, 'id'));
    tr.appendChild(el('td', row.topic, 'topic'));
    tr.appendChild(el('td', stateLabel(row), `state ${stateClass(row)}`));
    tr.appendChild(el('td', String(row.timesSent), 'sent'));
    tr.appendChild(el('td', time(row.modificationTime), 'modified'));
    tr.appendChild(el('td', row.preview, 'preview'));
    if (row.id === session.selected) tr.classList.add('selected');
    tr.addEventListener('click', () => openDetail(row.id).catch((e) => showError(e.message)));
    return tr;
  }

  // The detail pane.
  let detail = null;

  async function openDetail(id) {
    const { event } = await api(`events/${encodeURIComponent(id)}`);
    detail = event;
    session.selected = id;
    for (const tr of $('events-body').children) tr.classList.toggle('selected', tr.dataset.id === id);
    $('detail').hidden = false;
    $('detail-title').textContent = event.id;
    const fields = $('detail-fields');
    fields.textContent = '';
    const add = (name, value, className) => {
      fields.appendChild(el('dt', name));
      fields.appendChild(el('dd', value === null || value === undefined ? '' : String(value), className));
    };
    add('State', stateLabel(event), `state ${stateClass(event)}`);
    add('Topic', event.topic);
    add('Pubsub', event.pubsubName);
    add('Type', event.eventTypeName);
    add('Times sent', event.timesSent);
    add('Created (UTC)', time(event.creationTime));
    add('Modified (UTC)', time(event.modificationTime));
    const waits = event.orderingKey && event.state === 0 && event.nextAttemptTime === null;
    add('Next attempt', waits ? 'after the event before it in its key' : event.nextAttemptTime === null ? 'none' : time(event.nextAttemptTime));
    if (event.orderingKey) {
      add('Ordering key', event.orderingKey);
      add('Sequence', event.sequence);
    }
    add('Locked by', event.lockOwner);
    add('Row', event.rowId);
    add('traceparent', event.traceparent);
    $('detail-error').textContent = event.lastError || 'none';
    $('detail-content').textContent = event.data === null ? event.content : JSON.stringify(event.data, null, 2);
    renderDetailActions();
  }

  function renderDetailActions() {
    const terminal = !!(detail && detail.terminal);
    $('detail-republish').hidden = session.readOnly || !terminal;
    $('detail-delete').hidden = session.readOnly || !terminal;
  }

  function closeDetail() {
    detail = null;
    session.selected = null;
    $('detail').hidden = true;
    for (const tr of $('events-body').children) tr.classList.remove('selected');
  }

  async function act(what, path, body, confirmText, done) {
    if (confirmText && !window.confirm(confirmText)) return;
    const result = await mutate(path, body);
    if (done) done();
    showError('');
    $('updated').textContent = `${what}: ${result.republished ?? result.deleted ?? 0}`;
    await refresh();
  }

  // Subscriptions tab.
  async function loadSubscriptions() {
    const { subscriptions } = await api('subscriptions');
    const body = $('subscriptions-body');
    body.textContent = '';
    for (const s of subscriptions) {
      const tr = el('tr');
      tr.appendChild(el('td', s.pubsubname));
      tr.appendChild(el('td', s.topic));
      tr.appendChild(el('td', s.route));
      tr.appendChild(el('td', s.routes ? s.routes.rules.map((r) => `${r.match} -> ${r.path}`).join('; ') : ''));
      tr.appendChild(el('td', s.deadLetterTopic || ''));
      tr.appendChild(el('td', s.bulkSubscribe ? `${s.bulkSubscribe.maxMessagesCount} / ${s.bulkSubscribe.maxAwaitDurationMs} ms` : ''));
      body.appendChild(tr);
    }
    $('subscriptions-empty').hidden = subscriptions.length > 0;
  }

  function showTab(button) {
    for (const tab of document.querySelectorAll('.tab')) {
      const active = tab === button;
      tab.classList.toggle('active', active);
      $(tab.dataset.panel).hidden = !active;
    }
    if (button.id === 'tab-subscriptions') loadSubscriptions().catch((e) => showError(e.message));
  }

  async function refresh() {
    await loadStats();
    await loadEvents(false);
    if (session.selected) await openDetail(session.selected);
  }

  const report = (p) => p.then(() => showError(''), (e) => showError(e.message));

  document.addEventListener('DOMContentLoaded', () => {
    $('filters').addEventListener('submit', (e) => {
      e.preventDefault();
      report(loadEvents(false));
    });
    $('filter-state').addEventListener('change', () => report(loadEvents(false)));
    $('more').addEventListener('click', () => report(loadEvents(true)));
    $('refresh').addEventListener('click', () => report(refresh()));
    $('detail-close').addEventListener('click', closeDetail);
    $('detail-republish').addEventListener('click', () => report(act('republished', 'events/republish', { ids: [detail.id] })));
    $('detail-delete').addEventListener('click', () => report(act('deleted', 'events/delete', { ids: [detail.id] }, `Delete event ${detail.id}? This cannot be undone.`, closeDetail)));
    $('republish-all').addEventListener('click', () => {
      const topic = $('filter-topic').value.trim();
      report(act('republished', 'events/republish', { filter: topic ? { topic } : {} }, `Republish every failed event with no retry left${topic ? ` of topic ${topic}` : ''}?`));
    });
    $('delete-all').addEventListener('click', () => {
      const topic = $('filter-topic').value.trim();
      report(act('deleted', 'events/delete', { filter: topic ? { topic } : {} }, `Delete every failed event with no retry left${topic ? ` of topic ${topic}` : ''}? This cannot be undone.`));
    });
    for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => showTab(tab));
    report(refresh());
    setInterval(() => report(loadStats()), POLL_MS);
  });
})();
