// Drives the operations console (/console) in headless Chromium (playwright-core) for
// tests/campaign_sipp.rs. Env: CONSOLE_URL (http://127.0.0.1:PORT/console), ADMIN_USER,
// ADMIN_PASSWORD, VIEWER_USER, VIEWER_PASSWORD, CAMPAIGN_NAME, TRUNK, EXPECT_TOTAL (contacts
// the new campaign must get), SCREENSHOT (PNG path, optional), CHROMIUM (default /usr/bin/chromium).
// Prints one line per milestone on stdout, each `WORD <epoch ms> <detail>`:
//   CREATED   the admin created the campaign on the page; detail = its id
//   REFUSED   a viewer's start of it was refused and it stayed `created`; detail = the message
//   RUNNING   campaign-state-ID shows running after the admin's start button
//   PROGRESS  campaign-progress-ID moved (detail = its text), once per change
//   DONE      campaign-state-ID shows completed; detail = JSON of the page's outcome counts
// Exits 1 with a message on stderr when a milestone does not come within its time.
'use strict';
const { chromium } = require('playwright-core');

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};

function say(word, detail) {
  process.stdout.write(`${word} ${Date.now()} ${detail || ''}\n`);
}

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

async function login(browser, user, password) {
  const ctx = await browser.newContext({ viewport: { width: 1300, height: 800 } });
  const page = await ctx.newPage();
  page.on('console', (m) => process.stderr.write(`console: ${m.text()}\n`));
  await page.goto(env('CONSOLE_URL'));
  await page.getByTestId('login-user').fill(user);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-submit').click();
  await waitFor(`${user} logged in`, 10000, async () =>
    ((await text(page, 'operator-name')) || '').startsWith(user));
  return page;
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    // The admin: create from the delayed-orders list, start, watch it finish.
    const page = await login(browser, env('ADMIN_USER'), env('ADMIN_PASSWORD'));
    const name = env('CAMPAIGN_NAME');
    await page.getByTestId('campaign-name').fill(name);
    await page.getByTestId('campaign-dialplan').selectOption('delay-notify');
    await page.getByTestId('campaign-trunk').selectOption(env('TRUNK'));
    await page.getByTestId('campaign-ticket-status').fill('delayed');
    await page.getByTestId('campaign-max-channels').fill('2');
    await page.getByTestId('campaign-window-start').fill('00:00');
    await page.getByTestId('campaign-window-end').fill('23:59');
    await page.getByTestId('campaign-create').click();
    const msg = await waitFor('created', 10000, async () => {
      const t = await text(page, 'create-message');
      return t && /created|not created/.test(t) ? t : null;
    });
    const m = /campaign (\d+) created with (\d+) contacts/.exec(msg);
    if (!m) throw new Error(`create: ${msg}`);
    if (m[2] !== env('EXPECT_TOTAL')) throw new Error(`create: ${msg}, expected ${env('EXPECT_TOTAL')} contacts`);
    const id = m[1];
    say('CREATED', id);
    await waitFor('start button', 5000, async () => (await page.getByTestId(`campaign-start-${id}`).count()) > 0);

    // The viewer first: the page offers the button, the server refuses, nothing moves.
    const vpage = await login(browser, env('VIEWER_USER'), env('VIEWER_PASSWORD'));
    await waitFor('campaign listed for the viewer', 10000, async () =>
      (await vpage.getByTestId(`campaign-start-${id}`).count()) > 0);
    await vpage.getByTestId(`campaign-start-${id}`).click();
    const refused = await waitFor('refusal shown', 10000, async () => {
      const t = await text(vpage, 'action-message');
      return t && /refused/.test(t) ? t : null;
    });
    await new Promise((r) => setTimeout(r, 1500));
    const after = await text(vpage, `campaign-state-${id}`);
    if (after !== 'created') throw new Error(`viewer's refused start: state is ${after}`);
    say('REFUSED', refused);

    await page.getByTestId(`campaign-start-${id}`).click();
    await waitFor('running', 10000, async () => {
      const s = await text(page, `campaign-state-${id}`);
      return s === 'running' || s === 'completed';
    });
    say('RUNNING');
    let last = null;
    await waitFor('completed', 180000, async () => {
      const p = await text(page, `campaign-progress-${id}`);
      if (p !== last) { last = p; say('PROGRESS', p); }
      return (await text(page, `campaign-state-${id}`)) === 'completed';
    });
    // One more refresh so the counts are the final ones.
    await new Promise((r) => setTimeout(r, 1500));
    const outcomes = {};
    for (const el of await page.locator(`[data-testid^="campaign-outcome-${id}-"]`).all()) {
      const tid = await el.getAttribute('data-testid');
      const n = /(\d+)\s*$/.exec((await el.textContent()).trim());
      outcomes[tid.slice(`campaign-outcome-${id}-`.length)] = n ? Number(n[1]) : null;
    }
    say('DONE', JSON.stringify({ progress: await text(page, `campaign-progress-${id}`), outcomes }));
    if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });

  } finally {
    await browser.close();
  }
})().catch((e) => {
  process.stderr.write(`console.js: ${e.stack || e}\n`);
  process.exit(1);
});
