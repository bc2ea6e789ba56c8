// Drives Debian's chromium through the status page of a running daemon that
// tests/integration/status_page_test.cc started and seeded. Every check that
// the page changed something is made against the API, not the page.
//
// Environment: ORCH_URL (http://127.0.0.1:PORT), ORCH_TOKEN, ORCH_JOBS (JSON:
// the seeded job ids by role), ORCH_OPEN_URL (a second daemon, with no
// token), ORCH_SCREENSHOTS (a directory), CHROMIUM.
// Exit status 0 when every check passed; each failure is printed.
import {chromium} from 'playwright-core';
import {mkdirSync, rmSync} from 'node:fs';
import {createServer} from 'node:http';
import {join} from 'node:path';

const base = process.env.ORCH_URL;
const token = process.env.ORCH_TOKEN;
const jobs = JSON.parse(process.env.ORCH_JOBS);
const shots = process.env.ORCH_SCREENSHOTS;
rmSync(shots, {recursive: true, force: true});
mkdirSync(shots, {recursive: true});

const auth = {Authorization: `Bearer ${token}`};
async function get(path) {
  const r = await fetch(base + path, {headers: auth});
  if (!r.ok) throw new Error(`GET ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

// Polls `fn` until it returns something truthy; throws with `what` after `ms`.
async function until(what, fn, ms = 15000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let failures = 0;
async function step(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    ++failures;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}
function check(cond, message) {
  if (!cond) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // As root chromium needs --no-sandbox; the rest keep it off the network.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-default-apps', '--disable-extensions'],
});
const context = await browser.newContext({viewport: {width: 1360, height: 900}});
context.setDefaultTimeout(10000);
const page = await context.newPage();
const open = process.env.ORCH_OPEN_URL;
const consoleErrors = [];
const elsewhereErrors = [];  // the other site's page: its refused POST
let loggedIn = false;
// Every page of the context: both daemons' pages and the other site's.
context.on('console', (m) => {
  if (m.type() !== 'error') return;
  const url = m.page()?.url() || '';
  if (!url.startsWith(base) && !url.startsWith(open)) return void elsewhereErrors.push(m.text());
  // Before the token is given, the page's first API calls get their 401.
  if (!loggedIn && /status of 401/.test(m.text())) return;
  consoleErrors.push(`${m.page()?.url()}: ${m.text()}`);
});
context.on('weberror', (e) => consoleErrors.push(`uncaught: ${e.error().message}`));
const apiRequests = [];
page.on('request', (r) => apiRequests.push({url: r.url(), auth: r.headers().authorization || ''}));

const text = async (selector) => (await page.locator(selector).first().textContent()) ?? '';
const confirmYes = async () => {
  await page.locator('#confirm').waitFor({state: 'visible'});
  await page.click('#confirm-yes');
};

await step('without the token the page asks for it and shows no data', async () => {
  await page.goto(base + '/');
  await page.locator('#login').waitFor({state: 'visible'});
  check((await page.locator('#view').innerHTML()) === '', 'the view holds something before the token');
  const body = await page.locator('body').innerText();
  check(!body.includes('seed-'), 'a job name is on the page before the token');
  await page.screenshot({path: join(shots, 'token-prompt.png')});
});

await step('a wrong token is refused and asked for again', async () => {
  await page.fill('#login-token', 'not-the-token');
  await page.click('#login-submit');
  await until('the refusal', async () => (await page.locator('#login-error').isVisible()) &&
    (await text('#login-error')).includes('refused'));
  check((await page.locator('#view').innerHTML()) === '', 'data shown with a wrong token');
});

await step('with the token the overview shows the counts of the API', async () => {
  await page.fill('#login-token', token);
  loggedIn = true;
  const firstWithToken = apiRequests.length;
  await page.click('#login-submit');
  await page.locator('[data-count="running"]').waitFor();
  await until('page counts equal to /queue', async () => {
    const q = await get('/queue');
    for (const s of ['queued', 'running', 'succeeded', 'failed', 'cancelled']) {
      const shown = await text(`[data-count="${s}"] strong`);
      if (shown !== String(q.counts[s])) return false;
    }
    return true;
  });
  const sent = apiRequests.slice(firstWithToken).filter((r) => r.url.includes('/queue'));
  check(sent.length && sent.every((r) => r.auth === `Bearer ${token}`), 'the token was not sent as a bearer header');
  check(!(await context.cookies()).length, 'the page set a cookie');
  check(!page.url().includes(token), 'the token is in the URL');
});

await step('running, queued with its blocked reason, and the recent failure are listed', async () => {
  const sleeper = await get(`/jobs/${jobs.sleeper}`);
  await until('the running job', async () => (await page.locator(`#view tr[data-job-id="${jobs.sleeper}"]`).count()) > 0);
  const blockedRow = page.locator(`#view tr[data-job-id="${jobs.blocked}"]`).first();
  await until('the blocked reason', async () =>
    (await blockedRow.textContent()).includes(`serial key "db" is held by run ${sleeper.run_id}`));
  const failedRow = page.locator(`#view tr[data-job-id="${jobs.failed}"]`).first();
  await until('the failure with its reason', async () => (await failedRow.textContent()).includes('exit 3'));
  await page.locator('figure svg.chart').waitFor();
  await page.screenshot({path: join(shots, 'overview.png'), fullPage: true});
});

await step('a queued job\'s view says why it waits and asks for no log', async () => {
  await page.goto(`${base}/#/jobs/${jobs.blocked}`);
  await until('the reason', async () => (await page.locator('#view .blocked').first().textContent())
    .includes('serial key "db" is held by run'));
  await until('no output yet', async () => (await text('#log-state')).includes('not started'));
  check((await page.locator('tr[data-run-id]').count()) === 0, 'a queued job with runs');
});

await step('the job view shows the runs and a log tail that grows', async () => {
  await page.goto(`${base}/#/jobs/${jobs.printer}`);
  const job = await get(`/jobs/${jobs.printer}`);
  await page.locator(`tr[data-run-id="${job.runs[0].id}"]`).waitFor();
  const runRow = await page.locator(`tr[data-run-id="${job.runs[0].id}"]`).textContent();
  check(runRow.includes(String(job.runs[0].pid)), `run row lacks the pid: ${runRow}`);
  check(runRow.includes(String(job.runs[0].start_time)), `run row lacks the start time: ${runRow}`);
  const first = await until('some output', async () => {
    const t = await text('#log');
    return t.includes('tick') ? t : false;
  });
  const lines = (t) => t.split('\n').filter((l) => l.startsWith('tick')).length;
  await until('more output', async () => lines(await text('#log')) >= lines(first) + 3);
  const shown = (await text('#log')).split('\n').filter((l) => l.startsWith('tick'));
  // Followed by offset: every line once, in order, none lost at a seam.
  const numbers = shown.map((l) => Number(l.split(' ')[1]));
  for (let i = 1; i < numbers.length; ++i) check(numbers[i] === numbers[i - 1] + 1, `lines out of order: ${numbers}`);
  check((await text('#log')).includes('<b>not bold</b>'), 'markup in the output was not shown as text');
  check((await page.locator('#log b').count()) === 0, 'the output became HTML');
  await page.screenshot({path: join(shots, 'job.png'), fullPage: true});
});

await step('the log tail goes on across a cut at max_log_bytes', async () => {
  await page.goto(`${base}/#/jobs/${jobs.flood}`);
  await page.selectOption('#refresh-interval', '1000');
  await until('the cut', async () => (await text('#log')).includes('[the log was cut at max_log_bytes'), 20000);
  const at = (await text('#log')).length;
  await until('output after the cut', async () => /flood line \d+\n$/.test((await text('#log')).slice(at)));
  check((await text('#log-state')).startsWith('following run'), await text('#log-state'));
  await page.screenshot({path: join(shots, 'job-log-cut.png'), fullPage: true});
  await page.selectOption('#refresh-interval', '2000');
});

await step('switching to stderr while a stdout read is on its way shows stderr only', async () => {
  await page.goto(`${base}/#/jobs/${jobs.printer}`);
  await until('stdout shown', async () => (await text('#log')).includes('tick'));
  // Hold back the next stdout read, choose stderr meanwhile, then let it land.
  let release, holding;
  const held = new Promise((r) => { release = r; });
  const caught = new Promise((r) => { holding = r; });
  await page.route(/\/log\?stream=stdout/, async (route) => {
    holding();
    await held;
    await route.continue().catch(() => {});
  });
  await caught;
  await page.click('button[data-stream="stderr"]');
  release();
  await until('stderr shown', async () => (await text('#log')).includes('printer-stderr-line'));
  await page.unroute(/\/log\?stream=stdout/);
  const shown = await text('#log');
  check(!shown.includes('tick'), `stdout leaked into the stderr pane: ${shown.slice(0, 200)}`);
  await page.click('button[data-stream="stdout"]');
});

await step('env values are hidden until asked', async () => {
  await page.goto(`${base}/#/jobs/${jobs.printer}`);
  await page.locator('#env-toggle').waitFor();
  check(!(await page.locator('body').innerText()).includes('s3cret-value'), 'env value shown before asked');
  await page.click('#env-toggle');
  await until('the value', async () => (await page.locator('body').innerText()).includes('s3cret-value'));
});

await step('cancel from the job view cancels the job', async () => {
  await page.locator('.jobhead [data-action="cancel"]').click();
  await confirmYes();
  await until('cancelled in the API', async () => (await get(`/jobs/${jobs.printer}`)).status === 'cancelled');
  await until('the log ends', async () => (await text('#log-state')).includes('has ended'));
});

await step('retry from the page queues the failed job again', async () => {
  await page.goto(`${base}/#/jobs/${jobs.failed}`);
  await page.locator('.jobhead [data-action="retry"]').click();
  await until('a second run in the API', async () => (await get(`/jobs/${jobs.failed}`)).runs.length === 2);
  await until('the second run on the page', async () => (await page.locator('tr[data-run-id]').count()) === 2);
});

await step('pause and resume from the overview', async () => {
  await page.goto(`${base}/#/`);
  await page.locator('#pause-queue').waitFor();
  await until('the button', async () => (await text('#pause-queue')) === 'Pause queue');
  await page.click('#pause-queue');
  await confirmYes();
  await until('paused in the API', async () => (await get('/queue')).paused === true);
  await page.locator('#paused-flag').waitFor();
  await page.screenshot({path: join(shots, 'overview-paused.png'), fullPage: true});
  await page.click('#pause-queue');
  await until('resumed in the API', async () => (await get('/queue')).paused === false);
  await page.locator('#paused-flag').waitFor({state: 'detached'});
});

await step('the jobs list filters by status, name and key, and bulk-cancels', async () => {
  await page.goto(`${base}/#/jobs?status=queued&key=db`);
  await page.locator(`tr[data-job-id="${jobs.bulk[0]}"]`).waitFor();
  const rows = await page.locator('#view tbody tr').evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.jobId)));
  const want = (await get('/jobs?status=queued&serial_key=db&order=desc')).jobs.map((j) => j.id);
  check(JSON.stringify(rows) === JSON.stringify(want), `rows ${rows} != API ${want}`);
  await page.fill('#filter-name', 'seed-bulk');
  await page.press('#filter-name', 'Enter');
  await until('only the bulk jobs', async () => {
    const ids = await page.locator('#view tbody tr').evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.jobId)));
    return ids.length === 2 && ids.includes(jobs.bulk[0]) && ids.includes(jobs.bulk[1]);
  });
  check(page.url().includes('name=seed-bulk'), 'the filter is not in the address');
  for (const id of jobs.bulk) await page.check(`input[data-select="${id}"]`);
  await page.screenshot({path: join(shots, 'jobs.png'), fullPage: true});
  await page.click('#bulk-cancel');
  await confirmYes();
  for (const id of jobs.bulk) {
    await until(`job ${id} cancelled in the API`, async () => (await get(`/jobs/${id}`)).status === 'cancelled');
  }
  check((await get(`/jobs/${jobs.blocked}`)).status === 'queued', 'the unselected job was touched');
});

await step('the refresh choice and its pause are remembered', async () => {
  await page.selectOption('#refresh-interval', '5000');
  await page.click('#refresh-pause');
  await page.reload();
  await page.locator('#view table, #view .empty').first().waitFor();
  check((await page.inputValue('#refresh-interval')) === '5000', 'interval forgotten');
  check((await page.getAttribute('#refresh-pause', 'aria-pressed')) === 'true', 'pause forgotten');
  check(await page.locator('#login').isHidden(), 'the token was forgotten within the tab');
  await page.click('#refresh-pause');
  await page.selectOption('#refresh-interval', '1000');
});

// Without a token only the Origin check stands between a web page and the
// API: a page elsewhere may send a POST (no-cors) but must not pause it.
const openQueue = async () => (await fetch(open + '/queue')).json();
await step('without a token the page shows the queue at once', async () => {
  const p = await context.newPage();
  await p.goto(open + '/');
  await p.locator('[data-count="queued"]').waitFor();
  check(await p.locator('#login').isHidden(), 'asked for a token the daemon does not have');
  await p.click('#pause-queue');
  await p.click('#confirm-yes');
  await until('paused by its own page', async () => (await openQueue()).paused === true);
  await p.click('#pause-queue');
  await until('resumed by its own page', async () => (await openQueue()).paused === false);
  await p.close();
});

await step('a POST with a foreign Origin gets 403', async () => {
  const r = await fetch(open + '/queue/pause', {method: 'POST', headers: {Origin: 'http://elsewhere.example'}});
  check(r.status === 403, `status ${r.status}`);
  check((await r.json()).error.code === 'cross_origin', 'not refused as cross_origin');
  check((await openQueue()).paused === false, 'paused anyway');
});

await step('a page from another origin cannot pause the queue', async () => {
  // Another site on this machine (loopback, so the browser's own guard for
  // local addresses does not step in first).
  const site = createServer((req, res) => res.end('<!doctype html><title>elsewhere</title>'));
  await new Promise((r) => site.listen(0, '127.0.0.1', r));
  const other = await context.newPage();
  await other.goto(`http://127.0.0.1:${site.address().port}/`);
  const outcome = await other.evaluate(async (url) => {
    try {
      await fetch(url + '/queue/pause', {method: 'POST', mode: 'no-cors'});
      return 'sent';
    } catch (e) {
      return `error ${e.message}`;
    }
  }, open);
  await other.close();
  site.close();
  check(outcome === 'sent', `the request was not even sent: ${outcome}`);
  check(elsewhereErrors.some((e) => /status of 403/.test(e)), `no 403 seen: ${elsewhereErrors}`);
  check((await openQueue()).paused === false, 'a cross-origin POST paused the queue');
});

await step('no console errors', async () => {
  check(consoleErrors.length === 0, consoleErrors.join('\n'));
});

await browser.close();
console.log(failures ? `${failures} step(s) failed` : 'all steps passed');
process.exit(failures ? 1 : 0);
