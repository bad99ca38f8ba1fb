// Drives the wallboard page in headless Chromium (playwright-core) for tests/acd_sipp.rs.
// Env: WALLBOARD_URL (http://127.0.0.1:PORT/wallboard), WALLBOARD_TOKEN, QUEUE, SCREENSHOT
// (a PNG path, optional), CHROMIUM (default /usr/bin/chromium).
// Prints one line per milestone on stdout, each `WORD <epoch ms> <detail>`:
//   READY     the page is live (queue-waiting-QUEUE shows 0)
//   WAITING   queue-waiting-QUEUE shows 1
//   SL        queue-sl-QUEUE shows a percentage (an agent answered), with the ASA text
//   DONE      screenshot written
// Exits 1 with a message on stderr when a milestone does not come within its time.
'use strict';
const { chromium } = require('playwright-core');

const url = process.env.WALLBOARD_URL;
const token = process.env.WALLBOARD_TOKEN;
const queue = process.env.QUEUE || 'support';
const shot = process.env.SCREENSHOT;

function say(word, detail) {
  process.stdout.write(`${word} ${Date.now()} ${detail || ''}\n`);
}

async function waitText(page, testid, pred, timeoutMs, what) {
  const loc = page.getByTestId(testid);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const t = (await loc.count()) ? (await loc.first().textContent()) : null;
    if (t != null && pred(t.trim())) return t.trim();
    if (Date.now() > deadline) throw new Error(`${what}: ${testid} is ${JSON.stringify(t)} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on('console', (m) => process.stderr.write(`console: ${m.text()}\n`));
    // The login form, as a person would use it: the token is kept in sessionStorage.
    await page.goto(url);
    await page.getByTestId('login-token').fill(token);
    await page.getByTestId('login-submit').click();
    await waitText(page, `queue-waiting-${queue}`, (t) => t === '0', 10000, 'page live');
    say('READY');
    await waitText(page, `queue-waiting-${queue}`, (t) => t === '1', 30000, 'caller waiting');
    say('WAITING', await page.getByTestId(`queue-longest-wait-${queue}`).textContent());
    const sl = await waitText(page, `queue-sl-${queue}`, (t) => /%$/.test(t), 40000, 'service level');
    const asa = await page.getByTestId(`queue-asa-${queue}`).textContent();
    const waitingNow = await page.getByTestId(`queue-waiting-${queue}`).textContent();
    say('SL', JSON.stringify({ sl, asa, waiting: waitingNow }));
    if (shot) {
      await page.screenshot({ path: shot, fullPage: true });
      say('DONE', shot);
    }
  } finally {
    await browser.close();
  }
})().catch((e) => {
  process.stderr.write(`wallboard.js: ${e.stack || e}\n`);
  process.exit(1);
});
