// The status page (SPEC §13). Plain DOM, no framework: every value from the
// daemon enters the page as a text node, never as HTML. The token lives in
// sessionStorage (this tab only) and goes out as a bearer header; the refresh
// choice lives in localStorage.
'use strict';

(() => {
  const TOKEN_KEY = 'orchestrator.token';
  const REFRESH_KEY = 'orchestrator.refresh';
  const LOG_TAIL_BYTES = 64 * 1024;     // what a job view first shows of a log
  const LOG_KEEP_CHARS = 1024 * 1024;   // what it keeps while following
  const STATS_EVERY_MS = 15000;
  const REQUEST_TIMEOUT_MS = 15000;

  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers ------------------------------------------------------

  // Appends a child, or an array of them (nested arrays flattened).
  function add(el, children) {
    for (const c of [children].flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  // Replaces el's children (nulls skipped, strings as text).
  const fill = (el, ...children) => { el.replaceChildren(); return add(el, children); };
  // The same, only when `data` changed since the last time: what did not
  // change keeps its focus, selection and open details across refreshes.
  const filledFrom = new WeakMap();
  const fillIfChanged = (el, data, build) => {
    const key = JSON.stringify(data);
    if (filledFrom.get(el) === key) return;
    fill(el, build());
    filledFrom.set(el, key);
  };

  // h('td', {class: 'num', title: 'x', onclick: f}, 'text', child, ...)
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'checked' || k === 'value' || k === 'disabled') el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    return add(el, children);
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return add(el, children);
  }

  const link = (href, ...children) => h('a', {href}, ...children);
  const jobLink = (id) => link(`#/jobs/${id}`, `#${id}`);

  function table(headers, rows, empty) {
    if (!rows.length) return h('p', {class: 'muted empty'}, empty);
    return h('table', null,
      h('thead', null, h('tr', null, headers.map((x) => h('th', null, x)))),
      h('tbody', null, rows));
  }

  // ---- formatting -------------------------------------------------------

  function duration(s) {
    if (s === null || s === undefined) return '–';
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} m ${Math.floor(s % 60)} s`;
    const hr = Math.floor(m / 60);
    if (hr < 48) return `${hr} h ${m % 60} m`;
    return `${Math.floor(hr / 24)} d ${hr % 24} h`;
  }

  function bytes(n) {
    if (n === null || n === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; ++i; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }

  function time(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    const sameDay = d.toDateString() === new Date().toDateString();
    const text = sameDay ? d.toLocaleTimeString() : d.toLocaleString();
    return h('time', {datetime: iso, title: iso}, text);
  }

  const since = (iso) => (iso ? (Date.now() - Date.parse(iso)) / 1000 : null);
  const badge = (status) => h('span', {class: `badge ${status}`}, status);

  // `listed`: from a page of GET /jobs, which does not read runs (no open_run).
  function blockedWords(b, listed = false) {
    if (!b) return listed ? 'nothing holds it (its own page says more)' : 'next in line for a free slot';
    switch (b.reason) {
      case 'paused': return 'the queue is paused';
      case 'max_concurrency':
        return `all ${b.held_by.length} slots are taken (runs ${b.held_by.join(', ')})`;
      case 'serial_key': {
        let who = `run ${b.run_id}`;
        if (b.pid !== null) who += `, pid ${b.pid}`;
        if (b.node_id) who += ` on ${b.node_id}`;
        if (b.alive === false) who += ', which is no longer alive';
        return `serial key "${b.key}" is held by ${who}`;
      }
      case 'not_before': return `waits until ${new Date(b.until).toLocaleString()} (retry backoff or a later start)`;
      case 'open_run':
        return `its run ${b.run_id}${b.pid !== null ? ` (pid ${b.pid})` : ''} is still open; the reaper checks it first`;
      case 'host_fault': return `spawning backs off until ${new Date(b.until).toLocaleTimeString()}: ${b.error}`;
      default: return b.reason;
    }
  }

  // ---- the API ----------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // Resolves with the parsed JSON (or, when `raw`, {headers, data} with the
  // body's bytes); rejects with an ApiError. A 401 shows the token prompt.
  async function api(path, {method = 'GET', body, raw = false} = {}) {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(path, {
        method, headers, cache: 'no-store', credentials: 'omit',
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (e) {
      throw transportError(e);
    }
    if (resp.status === 401) {
      askForToken(token ? 'The daemon refused that token.' : '');
      throw new ApiError(401, 'unauthorized', 'the daemon needs its token');
    }
    let data;
    try {
      data = new Uint8Array(await resp.arrayBuffer());
    } catch (e) {
      throw transportError(e);
    }
    if (!resp.ok) {
      let code = `http_${resp.status}`;
      let message = resp.statusText;
      try {
        const e = JSON.parse(new TextDecoder().decode(data)).error;
        code = e.code;
        message = e.message;
      } catch (_) { /* not our error body */ }
      throw new ApiError(resp.status, code, message);
    }
    if (raw) return {headers: resp.headers, data};
    try {
      return JSON.parse(new TextDecoder().decode(data));
    } catch (_) {
      // Not the daemon's answer: whoever answers there now gets no more.
      throw new ApiError(0, 'unreachable', `${path} answered something that is not the daemon's JSON`);
    }
  }

  // A fetch that failed before a whole answer came.
  function transportError(e) {
    if (e.name === 'TimeoutError') {
      return new ApiError(0, 'timeout', `the daemon did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`);
    }
    return new ApiError(0, 'unreachable', `cannot reach the daemon (${e.message})`);
  }

  // ---- banner, confirmation, token prompt ---------------------------------

  let noticeTimer = 0;
  // `action`: {label, run} for a button after the text.
  function banner(text, kind = 'error', action = null) {
    const el = $('banner');
    clearTimeout(noticeTimer);
    el.className = kind;
    fill(el, text, action ? h('button', {type: 'button', onclick: action.run}, action.label) : null);
    el.hidden = !text;
    if (text && kind === 'notice') noticeTimer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  function confirmAction(text) {
    const dialog = $('confirm');
    $('confirm-text').textContent = text;
    return new Promise((resolve) => {
      const done = (answer) => {
        $('confirm-yes').onclick = $('confirm-no').onclick = dialog.oncancel = null;
        dialog.close();
        resolve(answer);
      };
      $('confirm-yes').onclick = () => done(true);
      $('confirm-no').onclick = () => done(false);
      dialog.oncancel = () => done(false);
      dialog.showModal();
      $('confirm-no').focus();
    });
  }

  let needToken = false;
  function askForToken(error) {
    sessionStorage.removeItem(TOKEN_KEY);
    needToken = true;
    clearTimeout(refresh.timer);
    if (view && view.unmount) view.unmount();
    view = null;
    $('view').replaceChildren();  // nothing of the queue stays on screen
    $('whoami').textContent = '';
    $('login-error').textContent = error;
    $('login-error').hidden = !error;
    $('login').hidden = false;
    $('login-token').focus();
  }

  function useToken() {
    const token = $('login-token').value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('login-token').value = '';
    $('login').hidden = true;
    needToken = false;
    route();
  }

  // ---- actions ----------------------------------------------------------

  async function act(what, fn) {
    try {
      await fn();
      banner(what, 'notice');
    } catch (e) {
      if (e.status !== 401) banner(`${what.replace(/\.$/, '')} failed: ${e.message}`);
    }
    tick();
  }

  // POST /jobs/{id}/{verb} for each id; one error naming those that failed.
  async function postEach(ids, verb) {
    const failures = [];
    for (const id of ids) {
      try { await api(`/jobs/${id}/${verb}`, {method: 'POST'}); } catch (e) {
        if (e.status === 401) throw e;
        failures.push(`#${id}: ${e.message}`);
      }
    }
    if (failures.length) throw new Error(failures.join('; '));
  }

  async function cancelJobs(ids) {
    const many = ids.length > 1;
    const ok = await confirmAction(many
      ? `Cancel ${ids.length} jobs? Running ones are sent SIGTERM, then SIGKILL after the grace period.`
      : `Cancel job #${ids[0]}? If it is running it is sent SIGTERM, then SIGKILL after the grace period.`);
    if (!ok) return;
    await act(many ? `${ids.length} jobs cancelled.` : `Job #${ids[0]} cancelled.`, () => postEach(ids, 'cancel'));
  }

  async function retryJobs(ids) {
    const many = ids.length > 1;
    if (many && !(await confirmAction(`Retry ${ids.length} jobs?`))) return;
    await act(many ? `${ids.length} jobs queued again.` : `Job #${ids[0]} queued again.`, () => postEach(ids, 'retry'));
  }

  async function setPaused(paused) {
    if (paused && !(await confirmAction('Pause the queue? Running jobs go on; no new job starts until you resume.'))) return;
    await act(paused ? 'Queue paused.' : 'Queue resumed.',
      () => api(paused ? '/queue/pause' : '/queue/resume', {method: 'POST'}));
  }

  const cancelButton = (id) => h('button', {type: 'button', class: 'danger small', 'data-action': 'cancel',
    onclick: () => cancelJobs([id])}, 'Cancel');
  const retryButton = (id) => h('button', {type: 'button', class: 'small', 'data-action': 'retry',
    onclick: () => retryJobs([id])}, 'Retry');

  // ---- the throughput chart ---------------------------------------------

  function chart(stats) {
    const mins = stats.minutes;
    const W = 720, H = 170, left = 36, right = 44, top = 10, bottom = 22;
    const pw = W - left - right, ph = H - top - bottom;
    const peak = Math.max(1, ...mins.map((m) => Math.max(m.started, m.finished)));
    const waitPeak = Math.max(0.001, ...mins.map((m) => m.wait_s_avg || 0));
    const step = pw / Math.max(1, mins.length);
    const bw = Math.max(1, step / 2 - 1);
    const y = (v) => top + ph - (v / peak) * ph;
    const g = svg('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
      'aria-label': 'runs started and finished per minute, and the queue wait'});
    add(g, [
      svg('line', {x1: left, x2: left + pw, y1: top + ph, y2: top + ph, class: 'axis'}),
      svg('text', {x: left - 4, y: top + 8, class: 'tick', 'text-anchor': 'end'}, peak),
      svg('text', {x: left - 4, y: top + ph, class: 'tick', 'text-anchor': 'end'}, 0),
      svg('text', {x: left + pw + 4, y: top + 8, class: 'tick wait'}, duration(waitPeak)),
      svg('text', {x: left, y: H - 4, class: 'tick'}, `${mins.length} min ago`),
      svg('text', {x: left + pw, y: H - 4, class: 'tick', 'text-anchor': 'end'}, 'now'),
    ]);
    const line = [];
    mins.forEach((m, i) => {
      const x = left + i * step;
      const label = `${new Date(m.minute).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'})}: ` +
        `${m.started} started, ${m.finished} finished (${m.succeeded} succeeded)` +
        (m.wait_s_avg === null ? '' : `, waited ${duration(m.wait_s_avg)} on average, ${duration(m.wait_s_max)} at most`);
      add(g, svg('g', null, svg('title', null, label),
        svg('rect', {x, y: y(m.started), width: bw, height: top + ph - y(m.started), class: 'started'}),
        svg('rect', {x: x + bw + 1, y: y(m.finished), width: bw, height: top + ph - y(m.finished), class: 'finished'})));
      if (m.wait_s_avg !== null) line.push(`${x + bw},${top + ph - (m.wait_s_avg / waitPeak) * ph}`);
    });
    if (line.length > 1) add(g, svg('polyline', {points: line.join(' '), class: 'wait'}));
    const total = (k) => mins.reduce((a, m) => a + m[k], 0);
    return h('figure', null, g, h('figcaption', null,
      h('span', {class: 'key started'}), `started ${total('started')}`,
      h('span', {class: 'key finished'}), `finished ${total('finished')} (${total('succeeded')} succeeded)`,
      h('span', {class: 'key wait'}), 'average queue wait of first attempts'));
  }

  // ---- views ------------------------------------------------------------
  // Each view builds its frame once (mount) and refills its parts on every
  // refresh (update), so that inputs, open details and scroll positions stay.

  function section(title, ...rest) {
    const body = h('div', {class: 'body'});
    return {el: h('section', {class: 'card'}, h('h2', null, title, ...rest), body), body};
  }

  function keyValues(pairs) {
    return h('dl', {class: 'kv'}, pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
  }

  function overview() {
    const counts = h('div', {class: 'counts'});
    const pause = h('button', {type: 'button', id: 'pause-queue'});
    const running = section('Running');
    const queued = section('Queued', h('span', {class: 'muted'}, ' oldest first, and why each waits'));
    const failures = section('Recent failures');
    const through = section('Throughput, last hour');
    const reaper = section('Reaper');
    const nodes = section('Supervisor and nodes');
    let statsAt = 0;
    let paused = false;
    pause.onclick = () => setPaused(!paused);

    return {
      mount(main) {
        add(main, [h('div', {class: 'toolbar'}, counts, pause),
          running.el, queued.el, failures.el, through.el, h('div', {class: 'grid'}, reaper.el, nodes.el)]);
      },
      async update() {
        const [q, names, waiting, failed] = await Promise.all([
          api('/queue'),
          api('/jobs?status=running&limit=200'),
          api('/jobs?status=queued&limit=10'),
          api('/jobs?status=failed&order=desc&limit=10'),
        ]);
        if (Date.now() - statsAt > STATS_EVERY_MS) {
          statsAt = Date.now();
          api('/stats?minutes=60').then((s) => fill(through.body, chart(s)), () => { statsAt = 0; });
        }
        paused = q.paused;
        pause.textContent = paused ? 'Resume queue' : 'Pause queue';
        pause.className = paused ? 'primary' : '';
        fill(counts,
          ...['queued', 'running', 'succeeded', 'failed', 'cancelled'].map((s) =>
            h('a', {class: `count ${s}`, href: `#/jobs?status=${s}`, 'data-count': s},
              h('strong', null, q.counts[s]), h('span', null, s))),
          h('div', {class: 'count'}, h('strong', null, `${q.counts.running}/${q.max_concurrency}`),
            h('span', null, 'slots used')),
          q.paused ? h('div', {class: 'count paused', id: 'paused-flag'}, h('strong', null, 'paused'),
            h('span', null, 'no new starts')) : null,
          q.oldest_queued_age_s !== null ? h('div', {class: 'count'},
            h('strong', null, duration(q.oldest_queued_age_s)), h('span', null, 'oldest queued')) : null);

        const name = new Map(names.jobs.map((j) => [j.id, j.name]));
        fill(running.body, table(
          ['job', 'name', 'run', 'pid', 'node', 'started', 'runtime', 'cpu', 'memory', 'idle', ''],
          q.running.map((r) => h('tr', {'data-job-id': r.id},
            h('td', null, jobLink(r.id)), h('td', null, name.get(r.id) || ''), h('td', {class: 'num'}, r.run_id),
            h('td', {class: 'num'}, r.pid ?? '–'), h('td', null, r.node_id), h('td', null, time(r.started_at)),
            h('td', {class: 'num'}, duration(r.runtime_s)),
            h('td', {class: 'num'}, r.cpu_s === undefined ? '–' : duration(r.cpu_s)),
            h('td', {class: 'num'}, bytes(r.mem_bytes)),
            h('td', {class: 'num'}, r.idle_s === undefined ? '–' : duration(r.idle_s)),
            h('td', null, cancelButton(r.id)))),
          'Nothing is running.'));

        fill(queued.body, table(['job', 'name', 'serial key', 'queued for', 'why it waits'],
          waiting.jobs.map((j) => h('tr', {'data-job-id': j.id},
            h('td', null, jobLink(j.id)), h('td', null, j.name), h('td', null, j.serial_key ?? ''),
            h('td', {class: 'num'}, duration(since(j.created_at))),
            h('td', {class: 'blocked'}, blockedWords(j.blocked_by, true)))),
          'Nothing is queued.'),
          q.counts.queued > waiting.jobs.length
            ? link('#/jobs?status=queued', `all ${q.counts.queued} queued jobs`) : null);

        fill(failures.body, table(['job', 'name', 'finished', 'outcome', 'reason', 'attempts', ''],
          failed.jobs.map((j) => h('tr', {'data-job-id': j.id},
            h('td', null, jobLink(j.id)), h('td', null, j.name), h('td', null, time(j.finished_at)),
            h('td', null, badge(j.outcome || 'failed')), h('td', {class: 'reason'}, j.error ?? ''),
            h('td', {class: 'num'}, `${j.attempts}/${j.max_attempts}`), h('td', null, retryButton(j.id)))),
          'No failed jobs.'));

        const rp = q.reaper;
        fill(reaper.body, keyValues([
          ['last tick', time(rp.last_tick_at)], ['interval', duration(rp.interval_ms / 1000)],
          ['ticks', rp.ticks_total], ['runs reaped', rp.reaped_total], ['lost', rp.lost_total],
          ['timeouts', rp.timeouts_total], ['orphans', rp.orphans_total],
          ['impossible queued repaired', rp.impossible_queued_total],
          ['sanitize', rp.sanitize_enabled ? 'on' : 'off'], ['errors', rp.errors_total],
          q.host_fault && q.host_fault.consecutive
            ? ['spawn faults', `${q.host_fault.consecutive} in a row: ${q.host_fault.last_error}`] : null,
        ]));

        const s = q.supervisor, c = q.cluster, cg = q.cgroup;
        fill(nodes.body, keyValues([
          ['version', s.version], ['pid', s.pid], ['incarnation', s.incarnation],
          ['up since', time(s.started_at)], ['uptime', duration(s.uptime_s)],
          ['store', c.backend], ['this node', c.node_id], ['lease', `${c.lease_s} s`],
          ['cgroups', `${cg.mode}${cg.root ? ` at ${cg.root}` : ''}${cg.why ? ` (${cg.why})` : ''}`],
          ['stalled runs', cg.stalled_total], ['OOM kills', cg.oom_kills_total],
        ]), table(['node', 'incarnation', 'heartbeat', 'lease', 'running'],
          c.nodes.map((n) => h('tr', null, h('td', null, n.node_id), h('td', null, n.incarnation),
            h('td', null, time(n.heartbeat_at)), h('td', null, h('span', {class: `badge ${n.alive ? 'alive' : 'dead'}`},
              n.alive ? 'held' : 'expired')), h('td', {class: 'num'}, n.running))),
          'No node has a lease.'));
        $('whoami').textContent = `${c.node_id} · v${s.version}`;
      },
    };
  }

  function jobsList(params) {
    const filters = {status: params.get('status') || '', name: params.get('name') || '',
      key: params.get('key') || ''};
    const before = params.get('before') || '';
    const selected = new Set();
    const listBody = h('div', {class: 'body'});
    const bulkCount = h('span', {class: 'muted'});
    const bulkCancel = h('button', {type: 'button', class: 'danger', id: 'bulk-cancel', disabled: true,
      onclick: () => cancelJobs([...selected])}, 'Cancel selected');
    const bulkRetry = h('button', {type: 'button', id: 'bulk-retry', disabled: true,
      onclick: () => retryJobs([...selected])}, 'Retry selected');
    const pager = h('div', {class: 'row pager'});

    const status = h('select', {id: 'filter-status', 'aria-label': 'status'},
      ['', 'queued', 'running', 'succeeded', 'failed', 'cancelled'].map((s) =>
        h('option', {value: s}, s || 'any status')));
    status.value = filters.status;
    const name = h('input', {id: 'filter-name', type: 'search', placeholder: 'name contains',
      value: filters.name, 'aria-label': 'name contains'});
    const key = h('input', {id: 'filter-key', type: 'search', placeholder: 'serial key',
      value: filters.key, 'aria-label': 'serial key'});
    const go = (extra = {}) => {
      const p = new URLSearchParams();
      if (status.value) p.set('status', status.value);
      if (name.value) p.set('name', name.value);
      if (key.value) p.set('key', key.value);
      for (const [k, v] of Object.entries(extra)) p.set(k, v);
      location.hash = `#/jobs${p.toString() ? `?${p}` : ''}`;
    };
    status.onchange = () => go();
    for (const input of [name, key]) input.onkeydown = (e) => { if (e.key === 'Enter') go(); };

    let shownIds = [];
    const syncBulk = () => {
      bulkCount.textContent = selected.size ? `${selected.size} selected` : '';
      bulkCancel.disabled = bulkRetry.disabled = !selected.size;
      const all = listBody.querySelector('input[data-select-all]');
      if (all) all.checked = shownIds.length > 0 && shownIds.every((id) => selected.has(id));
    };

    return {
      mount(main) {
        add(main, h('section', {class: 'card'},
          h('h2', null, 'Jobs', h('span', {class: 'muted'}, ' newest first')),
          h('div', {class: 'row filters'}, status, name, key,
            h('button', {type: 'button', onclick: () => go()}, 'Filter'),
            h('button', {type: 'button', onclick: () => { location.hash = '#/jobs'; }}, 'Clear')),
          h('div', {class: 'row bulk'}, bulkCancel, bulkRetry, bulkCount),
          listBody, pager));
      },
      async update() {
        const p = new URLSearchParams({order: 'desc', limit: '50'});
        if (filters.status) p.set('status', filters.status);
        if (filters.name) p.set('name', filters.name);
        if (filters.key) p.set('serial_key', filters.key);
        if (before) p.set('before_id', before);
        const page = await api(`/jobs?${p}`);
        shownIds = page.jobs.map((j) => j.id);
        for (const id of [...selected]) if (!shownIds.includes(id)) selected.delete(id);
        fillIfChanged(listBody, page, () => {
          const all = h('input', {type: 'checkbox', 'aria-label': 'select all', 'data-select-all': true,
            onchange: (e) => {
              for (const j of page.jobs) e.target.checked ? selected.add(j.id) : selected.delete(j.id);
              for (const box of listBody.querySelectorAll('input[data-select]')) box.checked = e.target.checked;
              syncBulk();
            }});
          return table(
            [all, 'job', 'name', 'status', 'attempts', 'serial key', 'created', 'finished', 'outcome or why it waits'],
            page.jobs.map((j) => h('tr', {'data-job-id': j.id},
              h('td', null, h('input', {type: 'checkbox', 'data-select': j.id, 'aria-label': `select job ${j.id}`,
                checked: selected.has(j.id),
                onchange: (e) => { e.target.checked ? selected.add(j.id) : selected.delete(j.id); syncBulk(); }})),
              h('td', null, jobLink(j.id)), h('td', null, j.name), h('td', null, badge(j.status)),
              h('td', {class: 'num'}, `${j.attempts}/${j.max_attempts}`), h('td', null, j.serial_key ?? ''),
              h('td', null, time(j.created_at)), h('td', null, time(j.finished_at)),
              h('td', {class: 'reason'}, j.status === 'queued' ? blockedWords(j.blocked_by, true)
                : [j.outcome ? badge(j.outcome) : null, ' ', j.error ?? '']))),
            'No job matches.');
        });
        syncBulk();
        fill(pager,
          before ? h('button', {type: 'button', onclick: () => go()}, '← Newest') : null,
          page.next_before_id !== null
            ? h('button', {type: 'button', id: 'older', onclick: () => go({before: page.next_before_id})}, 'Older →')
            : null);
      },
    };
  }

  // Follows one stream of a job's log run by run: a run is read with
  // run_id=&offset= until its end is out (X-Log-Complete), then the next
  // run (a retry) from its beginning, so no run's last lines are skipped.
  // The cut count (X-Log-Cut) goes back with each read, so that a cut at
  // max_log_bytes sends the tail on from after the cut.
  class LogTail {
    constructor(jobId) {
      this.jobId = jobId;
      this.stream = 'stdout';
      this.generation = 0;
      this.pre = h('pre', {class: 'log', id: 'log', tabindex: 0});
      this.state = h('span', {class: 'muted', id: 'log-state'});
      this.reset();
    }

    reset() {
      ++this.generation;  // answers to reads from before are dropped
      this.runId = null;  // null: start from the tail of the newest run
      this.offset = null;  // null: from the tail of the run
      this.cut = '';
      this.over = false;  // the run has ended and all of its log is shown (or refused)
      this.decoder = new TextDecoder();
      this.text = document.createTextNode('');
      fill(this.pre, this.text);
      this.state.textContent = '';
    }

    write(s) {
      if (!s) return;
      const atEnd = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 8;
      this.text.appendData(s);
      if (this.text.length > 2 * LOG_KEEP_CHARS) {
        this.text.deleteData(0, this.text.length - LOG_KEEP_CHARS);
      }
      if (atEnd) this.pre.scrollTop = this.pre.scrollHeight;
    }

    async poll(job) {
      const generation = this.generation;
      const withLog = job.runs.filter((r) => r.log_path !== null).map((r) => r.id);
      if (!withLog.length) {
        this.state.textContent = 'no output yet: the job has not started';
        return;
      }
      if (this.runId === null) this.runId = Math.max(...withLog);
      if (this.over) {
        // Each run in turn, even one that came and went between two polls.
        const later = withLog.filter((id) => id > this.runId);
        if (!later.length) return;  // nothing will come until a retry
        this.runId = Math.min(...later);
        this.write(`${this.decoder.decode()}\n──── run ${this.runId} ────\n`);
        this.offset = null;
        this.cut = '';
        this.over = false;
        this.decoder = new TextDecoder();
      }
      const from = this.offset === null ? `tail_bytes=${LOG_TAIL_BYTES}`
        : `offset=${this.offset}${this.cut ? `&cut=${encodeURIComponent(this.cut)}` : ''}`;
      let answer;
      try {
        answer = await api(`/jobs/${this.jobId}/log?stream=${this.stream}&run_id=${this.runId}&${from}`,
          {raw: true});
      } catch (e) {
        if (generation !== this.generation) return;
        if (e.code === 'log_on_other_node' || e.code === 'log_refused') {
          this.write(`[${e.message}]\n`);
          this.over = true;  // go on with the next run, if this node has it
          return;
        }
        throw e;
      }
      if (generation !== this.generation) return;  // another stream was chosen meanwhile
      const {headers, data} = answer;
      const end = Number(headers.get('X-Log-Offset'));
      if (headers.get('X-Log-Truncated') === 'true') {
        this.write(`${this.decoder.decode()}\n[the log was cut at max_log_bytes; going on after the cut]\n`);
        this.decoder = new TextDecoder();
      }
      let text = this.decoder.decode(data, {stream: true});
      if (this.offset === null && end > data.length) {
        // Started mid-log: drop the partial first line.
        text = text.slice(text.indexOf('\n') + 1);
        this.write(`[${end - data.length} earlier bytes not shown]\n`);
      }
      this.write(text);
      this.offset = end;
      this.cut = headers.get('X-Log-Cut') || this.cut;
      this.over = headers.get('X-Log-Complete') === 'true';
      if (this.over) this.write(this.decoder.decode());
      this.state.textContent = this.over ? `run ${this.runId} has ended` : `following run ${this.runId}…`;
      this.pre.dataset.run = this.runId;
    }
  }

  function jobView(id) {
    const title = h('h1', null, `Job #${id}`);
    const actions = h('div', {class: 'row actions'});
    const fields = h('div', {class: 'body'});
    const runs = section('Runs');
    const tail = new LogTail(id);
    const streamTabs = ['stdout', 'stderr'].map((s) => h('button', {type: 'button', class: 'tab',
      'data-stream': s, 'aria-pressed': String(s === 'stdout'),
      onclick: () => {
        tail.stream = s;
        tail.reset();
        for (const b of streamTabs) b.setAttribute('aria-pressed', String(b.dataset.stream === s));
        tick();
      }}, s));
    let showEnv = false;
    let job = null;
    const openArgs = new Set();

    const argvList = (argv) => h('ol', {class: 'argv'}, argv.map((a, i) => {
      if (a.length <= 200) return h('li', null, h('code', null, a));
      const d = h('details', {open: openArgs.has(i)}, h('summary', null, h('code', null, `${a.slice(0, 80)}…`),
        h('span', {class: 'muted'}, ` (${a.length} characters)`)), h('code', {class: 'full'}, a));
      d.ontoggle = () => (d.open ? openArgs.add(i) : openArgs.delete(i));
      return h('li', null, d);
    }));

    const envList = (env) => {
      const names = Object.keys(env);
      if (!names.length) return h('span', {class: 'muted'}, 'none');
      return h('div', null, h('ul', {class: 'env'}, names.map((n) => h('li', null, h('code', null, n), ' = ',
        showEnv ? h('code', null, env[n]) : h('span', {class: 'muted'}, 'hidden')))),
      h('button', {type: 'button', class: 'small', id: 'env-toggle',
        onclick: () => { showEnv = !showEnv; fillIfChanged(fields, [job, showEnv], () => describe(job)); }},
      showEnv ? 'Hide values' : 'Show values'));
    };

    const limits = (j) => [j.memory_max !== null ? `memory ${bytes(j.memory_max)}` : null,
      j.cpu_max !== null ? `cpu ${j.cpu_max} cores` : null, j.pids_max !== null ? `pids ${j.pids_max}` : null,
      j.stall_timeout_s !== null ? `stall after ${j.stall_timeout_s} s` : null].filter(Boolean).join(', ') || 'none';

    const describe = (j) => keyValues([
      ['status', [badge(j.status), j.cancel_requested && j.status === 'running' ? ' cancelling…' : '']],
      j.status === 'queued' ? ['why it waits', h('span', {class: 'blocked'}, blockedWords(j.blocked_by))] : null,
      ['argv', argvList(j.argv)],
      ['cwd', j.cwd ? h('code', null, j.cwd) : h('span', {class: 'muted'}, 'the daemon\'s')],
      ['env', envList(j.env)],
      ['serial key', j.serial_key ?? '–'], ['priority', j.priority],
      ['attempts', `${j.attempts} of ${j.max_attempts}`],
      ['timeout', j.timeout_s !== null ? `${j.timeout_s} s` : 'none'], ['limits', limits(j)],
      ['submitted', time(j.created_at)], ['started', time(j.started_at)], ['finished', time(j.finished_at)],
      j.outcome ? ['outcome', [badge(j.outcome), ' ', j.error ?? '',
        j.exit_code !== null ? ` (exit ${j.exit_code})` : '', j.signal !== null ? ` (signal ${j.signal})` : '']] : null,
      j.idempotency_key ? ['idempotency key', j.idempotency_key] : null,
    ]);

    return {
      mount(main) {
        add(main, [h('div', {class: 'jobhead'}, title, actions),
          h('section', {class: 'card'}, fields), runs.el,
          h('section', {class: 'card'}, h('h2', null, 'Output ', streamTabs, ' ', tail.state), tail.pre)]);
      },
      async update() {
        try {
          job = await api(`/jobs/${id}`);
        } catch (e) {
          if (e.status === 404) {
            title.textContent = `Job #${id}`;
            fillIfChanged(fields, e.message, () => h('p', {class: 'error'}, e.message));
            return;
          }
          throw e;
        }
        fill(title, `Job #${job.id} `, job.name ? h('span', {class: 'muted'}, job.name) : null, ' ',
          badge(job.status));
        fill(actions,
          job.status === 'queued' || job.status === 'running' ? cancelButton(job.id) : null,
          job.status === 'failed' || job.status === 'cancelled' ? retryButton(job.id) : null);
        fillIfChanged(fields, [job, showEnv], () => describe(job));
        fill(runs.body, table(
          ['run', 'attempt', 'node', 'pid', 'start time', 'boot', 'started', 'ended', 'took', 'outcome',
            'reason', 'exit', 'cpu', 'memory peak', 'cgroup'],
          job.runs.slice().reverse().map((r) => h('tr', {'data-run-id': r.id},
            h('td', {class: 'num'}, r.id), h('td', {class: 'num'}, r.attempt), h('td', null, r.node_id),
            h('td', {class: 'num'}, r.pid ?? '–'), h('td', {class: 'num'}, r.start_time ?? '–'),
            h('td', {title: r.boot_id ?? ''}, r.boot_id ? r.boot_id.slice(0, 8) : '–'),
            h('td', null, time(r.started_at)), h('td', null, time(r.ended_at)),
            h('td', {class: 'num'}, duration(r.ended_at ? (Date.parse(r.ended_at) - Date.parse(r.started_at)) / 1000
              : since(r.started_at))),
            h('td', null, r.outcome ? badge(r.outcome) : h('span', {class: 'badge running'}, 'open')),
            h('td', {class: 'reason'}, r.reason ?? ''),
            h('td', {class: 'num'}, r.signal !== null ? `signal ${r.signal}` : (r.exit_code ?? '–')),
            h('td', {class: 'num'}, r.cpu_usec !== null ? duration(r.cpu_usec / 1e6) : '–'),
            h('td', {class: 'num'}, bytes(r.mem_peak_bytes)),
            h('td', null, r.cgroup ? h('code', null, r.cgroup) : '–'))),
          'No run yet.'));
        await tail.poll(job);
      },
    };
  }

  // ---- routing and refresh ------------------------------------------------

  let view = null;
  let generation = 0;
  const refresh = {ms: 2000, paused: false, halted: false, timer: 0, running: false, again: false};

  function route() {
    if (needToken) return;
    if (view && view.unmount) view.unmount();
    const hash = location.hash.replace(/^#/, '') || '/';
    const [path, query] = hash.split('?');
    const params = new URLSearchParams(query || '');
    const m = path.match(/^\/jobs\/(\d+)$/);
    view = m ? jobView(Number(m[1])) : path === '/jobs' ? jobsList(params) : overview();
    const area = m || path === "/jobs" ? "jobs" : "overview";
    for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.nav === area);
    ++generation;
    const main = $('view');
    main.replaceChildren();
    view.mount(main);
    tick();
  }

  async function tick() {
    clearTimeout(refresh.timer);
    if (needToken || !view) return;
    if (refresh.running) { refresh.again = true; return; }
    refresh.running = true;
    refresh.halted = false;
    const gen = generation;
    const started = performance.now();
    try {
      await view.update();
      if (gen === generation) {
        $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
        if ($('banner').className === 'error') banner('');
      }
    } catch (e) {
      if (e.code === 'unreachable') {
        // The daemon is gone (a restart?). Whoever takes its port next must
        // not be sent the token unasked: wait for a click.
        refresh.halted = true;
        banner(`${e.message}. Refreshing stopped.`, 'error', {label: 'Try again', run: () => tick()});
      } else if (e.status !== 401) {
        banner(e.status === 0 ? e.message : `${e.code}: ${e.message}`);
      }
    } finally {
      refresh.running = false;
    }
    if (refresh.again) { refresh.again = false; return tick(); }
    // A slow answer (a filter that scans a big store) spaces the next one out.
    const wait = Math.max(refresh.ms, 10 * (performance.now() - started));
    if (!refresh.paused && !refresh.halted && !needToken) refresh.timer = setTimeout(tick, wait);
  }

  function loadRefresh() {
    try {
      const saved = JSON.parse(localStorage.getItem(REFRESH_KEY) || '{}');
      if ([1000, 2000, 5000, 15000, 60000].includes(saved.ms)) refresh.ms = saved.ms;
      refresh.paused = saved.paused === true;
    } catch (_) { /* keep the defaults */ }
    $('refresh-interval').value = String(refresh.ms);
    showPaused();
  }

  function saveRefresh() {
    localStorage.setItem(REFRESH_KEY, JSON.stringify({ms: refresh.ms, paused: refresh.paused}));
  }

  function showPaused() {
    const b = $('refresh-pause');
    b.textContent = refresh.paused ? 'Resume' : 'Pause';
    b.setAttribute('aria-pressed', String(refresh.paused));
    document.body.classList.toggle('refresh-paused', refresh.paused);
  }

  document.addEventListener('DOMContentLoaded', () => {
    loadRefresh();
    $('refresh-interval').onchange = (e) => {
      refresh.ms = Number(e.target.value);
      saveRefresh();
      tick();
    };
    $('refresh-pause').onclick = () => {
      refresh.paused = !refresh.paused;
      saveRefresh();
      showPaused();
      if (refresh.paused) clearTimeout(refresh.timer); else tick();
    };
    $('login-submit').onclick = useToken;
    $('login-token').onkeydown = (e) => { if (e.key === 'Enter') useToken(); };
    window.addEventListener('hashchange', route);
    route();
  });
})();
