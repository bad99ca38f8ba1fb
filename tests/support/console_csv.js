// Drives the operations console's CSV upload in headless Chromium (playwright-core) for
// tests/campaign_sipp.rs. Env: CONSOLE_URL, ADMIN_USER, ADMIN_PASSWORD, CAMPAIGN_NAME, TRUNK,
// BAD_CSV, BIG_CSV, GOOD_CSV (file paths), SCREENSHOT (optional), CHROMIUM.
// Prints one line per milestone on stdout, each `WORD <epoch ms> <detail>`:
//   BAD_PREVIEW  the bad file's preview; detail = JSON {lines: [bad line numbers], contacts}
//   BAD_CREATE   "create" with the bad file (not confirmed): detail = the page's message
//   BIG          the oversized file: detail = the HTTP status the page reports
//   GOOD_PREVIEW detail = JSON {contacts, segments, errors}
//   CREATED      the campaign from the good file; detail = its id
//   DONE         completed; detail = JSON {progress, outcomes} as the page shows them
//   CONTACTS     the contacts list filtered by outcome=wait; detail = JSON {total, rows}
//   DOWNLOAD     the results CSV behind the page's link; detail = JSON {lines, header}
//   REPORT       /api/reports/campaigns/ID with the page's cookie; detail = the JSON
'use strict';
const { chromium } = require('playwright-core');

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const say = (word, detail) => process.stdout.write(`${word} ${Date.now()} ${detail || ''}\n`);

async function waitFor(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function text(page, testid) {
  const loc = page.getByTestId(testid);
  return (await loc.count()) ? (await loc.first().textContent()).trim() : null;
}

// Pick a file and wait for the server's preview (or refusal) to replace the previous one.
async function pick(page, path) {
  await page.evaluate(() => { document.getElementById('csv-preview').textContent = ''; });
  await page.getByTestId('campaign-csv-upload').setInputFiles(path);
  return waitFor(`preview of ${path}`, 20000, async () => {
    const t = await text(page, 'csv-preview');
    return t ? t : null;
  });
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const ctx = await browser.newContext({ viewport: { width: 1300, height: 900 } });
    const page = await ctx.newPage();
    page.on('console', (m) => process.stderr.write(`console: ${m.text()}\n`));
    await page.goto(env('CONSOLE_URL'));
    await page.getByTestId('login-user').fill(env('ADMIN_USER'));
    await page.getByTestId('login-password').fill(env('ADMIN_PASSWORD'));
    await page.getByTestId('login-submit').click();
    await waitFor('logged in', 10000, async () =>
      ((await text(page, 'operator-name')) || '').startsWith(env('ADMIN_USER')));

    const id0 = env('CAMPAIGN_NAME');
    await page.getByTestId('campaign-source-csv').check();
    await page.getByTestId('campaign-name').fill(id0);
    await page.getByTestId('campaign-dialplan').selectOption('delay-notify');
    await page.getByTestId('campaign-trunk').selectOption(env('TRUNK'));
    await page.getByTestId('campaign-max-channels').fill('2');
    await page.getByTestId('campaign-window-start').fill('00:00');
    await page.getByTestId('campaign-window-end').fill('23:59');

    // 1. Bad rows: listed by line; "create" without confirming imports nothing.
    const badPreview = await pick(page, env('BAD_CSV'));
    const lines = [];
    for (const el of await page.locator('[data-testid^="csv-error-"]').all()) {
      lines.push(Number((await el.getAttribute('data-testid')).slice('csv-error-'.length)));
    }
    const contacts = await page.getByTestId('csv-preview').getAttribute('data-contacts');
    say('BAD_PREVIEW', JSON.stringify({ lines, contacts: Number(contacts), text: badPreview }));
    await page.getByTestId('campaign-create').click();
    const bad = await waitFor('bad create refused', 10000, async () => {
      const t = await text(page, 'create-message');
      return t && /not created|created/.test(t) ? t : null;
    });
    say('BAD_CREATE', bad);

    // 2. An oversized file: the server answers 413 before reading it all.
    const big = await pick(page, env('BIG_CSV'));
    say('BIG', (await page.getByTestId('csv-preview').getAttribute('data-status')) + ' ' + big);

    // 3. The good file: preview, then create (the confirmation), start, run to the end.
    await pick(page, env('GOOD_CSV'));
    const el = page.getByTestId('csv-preview');
    say('GOOD_PREVIEW', JSON.stringify({
      contacts: Number(await el.getAttribute('data-contacts')),
      errors: Number(await el.getAttribute('data-errors')),
      segments: JSON.parse(await el.getAttribute('data-segments')),
    }));
    await page.evaluate(() => { document.getElementById('create-msg').textContent = ''; });
    await page.getByTestId('campaign-create').click();
    const msg = await waitFor('created', 10000, async () => {
      const t = await text(page, 'create-message');
      return t && /created/.test(t) ? t : null;
    });
    const m = /campaign (\d+) created with (\d+) contacts/.exec(msg);
    if (!m) throw new Error(`create: ${msg}`);
    const id = m[1];
    say('CREATED', id);
    await waitFor('start button', 5000, async () => (await page.getByTestId(`campaign-start-${id}`).count()) > 0);
    await page.getByTestId(`campaign-start-${id}`).click();
    await waitFor('completed', 180000, async () => (await text(page, `campaign-state-${id}`)) === 'completed');
    await new Promise((r) => setTimeout(r, 1500));
    const outcomes = {};
    for (const o of await page.locator(`[data-testid^="campaign-outcome-${id}-"]`).all()) {
      const tid = await o.getAttribute('data-testid');
      const n = /(\d+)\s*$/.exec((await o.textContent()).trim());
      outcomes[tid.slice(`campaign-outcome-${id}-`.length)] = n ? Number(n[1]) : null;
    }
    say('DONE', JSON.stringify({ progress: await text(page, `campaign-progress-${id}`), outcomes }));

    // 4. The contacts list, filtered; the results download; the report.
    await page.getByTestId(`campaign-contacts-${id}`).click();
    await page.getByTestId('contacts-filter-outcome').fill('wait');
    await page.getByTestId('contacts-apply').click();
    const total = await waitFor('contacts filtered', 10000, async () => {
      // Only the list of the filtered query counts (the unfiltered one opened first may
      // still be on screen).
      if ((await page.getByTestId('contacts-page').getAttribute('data-query')) !== 'outcome=wait') return null;
      const t = await page.getByTestId('contacts-page').getAttribute('data-total');
      const rows = await page.locator('[data-testid^="contact-row-"]').count();
      return t !== null && Number(t) === rows && /of/.test(await text(page, 'contacts-page')) ? t : null;
    });
    const outs = [];
    for (const o of await page.locator('[data-testid^="contact-outcome-"]').all()) outs.push((await o.textContent()).trim());
    say('CONTACTS', JSON.stringify({ total: Number(total), outcomes: outs, page: await text(page, 'contacts-page') }));
    const href = await page.getByTestId(`campaign-download-${id}`).getAttribute('href');
    const csv = await page.evaluate(async (u) => (await fetch(u)).text(), href);
    const csvLines = csv.trim().split('\n');
    say('DOWNLOAD', JSON.stringify({ lines: csvLines.length, header: csvLines[0] }));
    const report = await page.evaluate(async (u) => (await fetch(u)).json(), `/api/reports/campaigns/${id}`);
    say('REPORT', JSON.stringify(report));
    if (process.env.SCREENSHOT) {
      await page.getByTestId('campaign-source-csv').scrollIntoViewIfNeeded();
      await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    }
  } finally {
    await browser.close();
  }
})().catch((e) => {
  process.stderr.write(`console_csv.js: ${e.stack || e}\n`);
  process.exit(1);
});
