// Drives the wallboard page in headless Chromium (playwright-core) for tests/acd_sipp.rs.
// Env: WALLBOARD_URL (http://127.0.0.1:PORT/wallboard), WALLBOARD_TOKEN, QUEUE, SCREENSHOT
// (a PNG path, optional), CHROMIUM (default /usr/bin/chromium), MODE (below).
// Prints one line per milestone on stdout, each `WORD <epoch ms> <detail>`.
//
// MODE unset (the live test):
//   READY     the page is live (queue-waiting-QUEUE shows 0)
//   WAITING   queue-waiting-QUEUE shows 1
//   SL        queue-sl-QUEUE shows a percentage (an agent answered), with the ASA text
//   DONE      screenshot written
// MODE=figures (the restart test): signs in, prints READY, then obeys one command per stdin
// line, so the test can restart the server under the open page:
//   figures      FIGURES: the day's figures as the page shows them (JSON, see `figures()`)
//   reconnected  waits for the page to reopen its stream (after a restart) and a snapshot
//                of the new server, then FIGURES
//   reload       reloads the page (the token stays in sessionStorage), then FIGURES
//   shot         a full-page screenshot to SCREENSHOT, then SHOT
//   quit         closes the browser
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

// Live: the stream opened `minConnects` times and a snapshot rendered since; the interval
// chart loaded from the report endpoint.
async function waitLive(page, minConnects, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await page.evaluate(() => {
      const s = document.getElementById('status');
      const c = document.getElementById('chart-intervals');
      return { connects: Number(s.dataset.connects || 0), text: s.textContent,
        loaded: Number(c.getAttribute('data-loaded-at') || 0) };
    });
    if (st.connects >= minConnects && st.text.startsWith('live') && st.loaded > 0) return st.connects;
    if (Date.now() > deadline) throw new Error(`page not live (${minConnects} connects) after ${timeoutMs} ms: ${JSON.stringify(st)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// The day's figures as the page shows them: the queue row, every agent's calls today, each
// campaign's outcome chart (data-count of every rect) and outcome counts in the table, the
// interval chart's non-empty intervals for all queues and for QUEUE alone, the hotline.
async function figures(page) {
  const read = () => page.evaluate((queue) => {
    const t = (id) => { const e = document.querySelector(`[data-testid="${id}"]`); return e ? e.textContent.trim() : null; };
    const all = (prefix) => [...document.querySelectorAll(`[data-testid^="${prefix}"]`)];
    const campaigns = {};
    for (const svg of all('chart-outcomes-')) {
      const id = svg.dataset.testid.slice('chart-outcomes-'.length);
      const chart = {}, table = {};
      for (const r of svg.querySelectorAll('rect[data-count]')) {
        const k = r.dataset.testid.slice(`chart-outcome-${id}-`.length);
        chart[k] = Number(r.dataset.count);
        table[k] = t(`campaign-outcome-${id}-${k}`);
      }
      campaigns[id] = { chart, table, progress: t(`campaign-progress-${id}`) };
    }
    const intervals = {};
    for (const g of all('chart-interval-')) {
      if (Number(g.dataset.offered) === 0 && Number(g.dataset.answered) === 0) continue;
      intervals[g.dataset.testid.slice('chart-interval-'.length)] = { offered: Number(g.dataset.offered),
        answered: Number(g.dataset.answered), abandoned: Number(g.dataset.abandoned), sl: g.dataset.sl };
    }
    const agents = {};
    for (const e of all('agent-calls-')) agents[e.dataset.testid.slice('agent-calls-'.length)] = e.textContent.trim();
    return {
      queue: { calls: t(`queue-calls-${queue}`), answered: t(`queue-answered-${queue}`), sl: t(`queue-sl-${queue}`),
        asa: t(`queue-asa-${queue}`), aht: t(`queue-aht-${queue}`), abandon: t(`queue-abandon-${queue}`) },
      agents, campaigns, intervals, chart_queue: document.getElementById('chart-intervals').dataset.queue,
      hotline_self_service: t('hotline-self-service'),
    };
  }, queue);
  const out = await read();
  // The selector: QUEUE alone, then back to all queues.
  const sel = page.getByTestId('chart-intervals-queue');
  await sel.selectOption(queue);
  out.intervals_queue = (await read()).intervals;
  await sel.selectOption('');
  return out;
}

async function commands(page) {
  let connects = await waitLive(page, 1, 15000);
  say('READY', String(connects));
  const rl = require('readline').createInterface({ input: process.stdin });
  for await (const line of rl) {
    const cmd = line.trim();
    if (cmd === 'figures') {
      say('FIGURES', JSON.stringify(await figures(page)));
    } else if (cmd === 'reconnected') {
      connects = await waitLive(page, connects + 1, 30000);
      say('FIGURES', JSON.stringify(await figures(page)));
    } else if (cmd === 'reload') {
      await page.reload();
      connects = await waitLive(page, 1, 15000);
      say('FIGURES', JSON.stringify(await figures(page)));
    } else if (cmd === 'shot') {
      await page.screenshot({ path: shot, fullPage: true });
      say('SHOT', shot);
    } else if (cmd === 'quit') {
      break;
    } else {
      throw new Error(`unknown command ${JSON.stringify(cmd)}`);
    }
  }
  rl.close();
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
    if (process.env.MODE === 'figures') {
      await commands(page);
      return;
    }
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
