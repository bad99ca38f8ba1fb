// Drives the agent workspace (GET /agent) in headless Chromium through playwright-core, by
// its data-testid contract: a wrong password is refused on the page, the right one shows
// the agent's state, a pause with a reason from the list is reflected, the session cookie
// has the promised flags. Prints one JSON line; tests/sip_ws.rs checks it and the server.
// usage: node agent_login.js BASE_URL AGENT PASSWORD [SCREENSHOT.png]
// (playwright-core is found through NODE_PATH; Chromium at $CHROMIUM or /usr/bin/chromium.)
const { chromium } = require('playwright-core');

const [base, agent, password, shot] = process.argv.slice(2);
const args = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream', '--allow-loopback-in-peer-connection'];

(async () => {
  const out = { steps: [] };
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args });
  try {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 720 } });
    const page = await ctx.newPage();
    page.on('console', (m) => { if (m.type() === 'error') out.steps.push('console: ' + m.text()); });
    const by = (id) => page.locator(`[data-testid="${id}"]`);
    await page.goto(`${base}/agent`);
    await by('login-user').waitFor({ state: 'visible', timeout: 10000 });
    out.steps.push('login form');

    await by('login-user').fill(agent);
    await by('login-password').fill(password + '-wrong');
    await by('login-submit').click();
    await page.waitForFunction(() => document.querySelector('[data-testid="login-error"]').textContent.length > 0, null, { timeout: 10000 });
    out.wrong_error = await by('login-error').textContent();
    out.wrong_state_visible = await by('agent-state').isVisible();

    await by('login-user').fill(agent);
    await by('login-password').fill(password);
    await by('login-submit').click();
    await by('agent-state').waitFor({ state: 'visible', timeout: 10000 });
    await page.waitForFunction(() => document.querySelector('[data-testid="agent-name"]').textContent.length > 0, null, { timeout: 10000 });
    out.state_after_login = await by('agent-state').getAttribute('data-state');
    out.pause_reasons = await by('pause-reason').locator('option').allTextContents();

    await by('pause-reason').selectOption('lunch');
    await by('state-pause').click();
    await page.waitForFunction(() => document.querySelector('[data-testid="agent-state"]').textContent.includes('lunch'), null, { timeout: 10000 });
    out.state_after_pause = await by('agent-state').textContent();

    const cookies = await ctx.cookies();
    const c = cookies.find((x) => x.name === 'sb_agent');
    out.cookie = c ? { value: c.value, httpOnly: c.httpOnly, sameSite: c.sameSite, secure: c.secure, path: c.path } : null;
    // The page's own script cannot read an HttpOnly cookie.
    out.js_sees_cookie = await page.evaluate(() => document.cookie.includes('sb_agent'));
    out.testids = await page.evaluate(() => [...document.querySelectorAll('[data-testid]')].map((e) => e.dataset.testid));
    if (shot) { await page.screenshot({ path: shot, fullPage: true }); out.screenshot = shot; }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(2); });
