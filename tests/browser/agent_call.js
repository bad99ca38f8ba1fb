// A browser agent taking an ACD call in the workspace (GET /agent), by its data-testid
// contract: log in, turn on "take calls in this browser" (`browser-phone`), print READY;
// when the page rings (`incoming-call`), click `answer` (the page offers WebRTC to the
// server), wait until audio flows both ways, read getStats, click `hangup`, and print one
// JSON line of what it saw. tests/sip_ws.rs starts the SIPp caller after READY and checks
// the server's side.
// Mode `ring-only`: do not answer; wait for the ring to end by itself (the caller hung up)
// and report the `call-ended` reason the page saw.
// usage: node agent_call.js BASE_URL AGENT PASSWORD [answer|ring-only]
// (playwright-core through NODE_PATH; Chromium at $CHROMIUM or /usr/bin/chromium.)
const { chromium } = require('playwright-core');

const [base, agent, password, mode = 'answer'] = process.argv.slice(2);
// As tests/browser/webrtc_leg.js: fake microphone (a beep), loopback host candidates that
// are IPs, not mDNS names.
const args = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream', '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns', '--autoplay-policy=no-user-gesture-required'];

async function stats(page) {
  return page.evaluate(async () => {
    const r = { conn: phone.pc ? phone.pc.connectionState : null };
    if (!phone.pc) return r;
    (await phone.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') { r.rx_bytes = s.bytesReceived; r.rx_packets = s.packetsReceived; r.rx_energy = s.totalAudioEnergy; }
      if (s.type === 'outbound-rtp' && s.kind === 'audio') { r.tx_packets = s.packetsSent; }
      if (s.type === 'transport') { r.dtls = s.dtlsState; }
      if (s.type === 'codec' && s.mimeType.startsWith('audio/')) { r.codecs = (r.codecs || []).concat(s.mimeType); }
    });
    return r;
  });
}

(async () => {
  const out = { steps: [] };
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => { if (m.type() === 'error') out.steps.push('console: ' + m.text()); });
    const by = (id) => page.locator(`[data-testid="${id}"]`);
    await page.goto(`${base}/agent`);
    await by('login-user').fill(agent);
    await by('login-password').fill(password);
    await by('login-submit').click();
    await by('agent-state').waitFor({ state: 'visible', timeout: 10000 });
    await by('browser-phone').check();
    await page.waitForFunction(() => me && me.phone === true, null, { timeout: 10000 });
    out.steps.push('phone on');
    process.stdout.write('READY\n');

    await by('incoming-call').waitFor({ state: 'visible', timeout: 30000 });
    out.steps.push('ringing');
    out.screen_pop_name = await by('screen-pop-name').textContent();
    if (mode === 'ring-only') {
      await by('incoming-call').waitFor({ state: 'hidden', timeout: 30000 });
      out.note = await page.locator('#phone-note').textContent();
      out.ringing_after = await page.evaluate(() => phone.ringing);
      process.stdout.write(JSON.stringify(out) + '\n');
      return;
    }
    await by('answer').click();
    const deadline = Date.now() + 20000;
    let s = {};
    while (Date.now() < deadline) {
      await page.waitForTimeout(250);
      s = await stats(page);
      if (s.conn === 'connected' && s.rx_packets >= 100 && s.rx_energy > 0 && s.tx_packets >= 100) break;
    }
    out.stats = s;
    out.rx_packets_shown = await by('call-stats-rx-packets').textContent();
    out.call_status = await by('call-status').textContent();
    out.steps.push('talked');
    await by('hangup').click();
    await page.waitForFunction(() => phone.active === null && phone.pc === null, null, { timeout: 10000 });
    out.steps.push('hung up');
    out.after = await by('call-status').textContent();
    process.stdout.write(JSON.stringify(out) + '\n');
  } catch (e) {
    out.error = String(e && e.stack || e);
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
