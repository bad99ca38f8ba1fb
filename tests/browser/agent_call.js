// A browser agent taking an ACD call in the workspace (GET /agent), by its data-testid
// contract: log in, turn on "take calls in this browser" (`browser-phone`), print READY;
// when the page rings (`incoming-call`), click `answer` (the page offers WebRTC to the
// server), wait until audio flows both ways, read getStats, click `hangup`, and print one
// JSON line of what it saw. tests/sip_ws.rs starts the SIPp caller after READY and checks
// the server's side.
// Mode `ring-only`: do not answer; wait for the ring to end by itself (the caller hung up)
// and report the `call-ended` reason the page saw.
// Mode `controls:QUEUE`: answer, then hold (3 s), resume (3 s), press 5 on the DTMF pad,
// and blind-transfer the caller to QUEUE; report the page's packet counts around each step
// with wall-clock times (ms since the epoch) so the test can line them up with the caller.
// Mode `vanish`: answer, then close the page without hanging up (as a crashed tab); on a
// line on stdin, log in again in a new page with the phone on, and report the agent states
// seen until available.
// Mode `transfer-agent:NAME[,NAME...]`: one call per NAME, each answered in the page and,
// once audio flows, blind-transferred to agent NAME by the transfer control (kind `agent`,
// NAME offered in the `transfer-agent` list); one JSON line per call with the page's notes
// (`phone-note` texts seen) and the listed state of NAME; then wait for the next ring.
// Mode `dispose`: as `answer`, and report the pop's order (`screen-pop-order`); after the
// hang-up, submit the disposition form until it is saved.
// Prefix `opus+` (e.g. `opus+controls:sales`): the page's offer carries no G.711 (codec
// preferences set before `createOffer`), so the server's leg runs on Opus and transcodes.
// usage: node agent_call.js BASE_URL AGENT PASSWORD
//   [opus+][answer|dispose|ring-only|controls:QUEUE|transfer-agent:NAME[,NAME...]|vanish]
// (playwright-core through NODE_PATH; Chromium at $CHROMIUM or /usr/bin/chromium.)
const { chromium } = require('playwright-core');

const [base, agent, password, fullMode = 'answer'] = process.argv.slice(2);
const opusOnly = fullMode.startsWith('opus+');
const mode = opusOnly ? fullMode.slice('opus+'.length) : fullMode;
// As tests/browser/webrtc_leg.js: fake microphone (a beep), loopback host candidates that
// are IPs, not mDNS names.
const args = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream', '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns', '--autoplay-policy=no-user-gesture-required'];
// The LAN and NAT tests serve the page on a veth address over plain HTTP: only loopback is a
// secure origin by itself, and the page needs one for the microphone (operators use HTTPS).
// Over HTTPS (`https://…`, the server's `[http] tls_cert`) no flag: the origin is secure by
// its scheme; the test's self-signed certificate is accepted for the context
// (`ignoreHTTPSErrors`), as an agent accepts it once in the browser's warning page.
const https = new URL(base).protocol === 'https:';
if (!https && !['localhost', '127.0.0.1', '[::1]'].includes(new URL(base).hostname)) {
  args.push(`--unsafely-treat-insecure-origin-as-secure=${new URL(base).origin}`);
}

async function stats(page) {
  return page.evaluate(async () => {
    const r = { conn: phone.pc ? phone.pc.connectionState : null };
    if (!phone.pc) return r;
    const all = await phone.pc.getStats();
    let pairId = null;
    all.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') { r.rx_bytes = s.bytesReceived; r.rx_packets = s.packetsReceived; r.rx_energy = s.totalAudioEnergy; }
      if (s.type === 'outbound-rtp' && s.kind === 'audio') { r.tx_packets = s.packetsSent; }
      if (s.type === 'transport') { r.dtls = s.dtlsState; pairId = s.selectedCandidatePairId; }
      if (s.type === 'codec' && s.mimeType.startsWith('audio/')) { r.codecs = (r.codecs || []).concat(s.mimeType); }
    });
    // The ICE pair the media flows on: the browser's own address and the server's candidate
    // (where the test's network put each side).
    const pair = pairId && all.get(pairId);
    if (pair) {
      const at = (id) => { const c = all.get(id); return c ? `${c.address}:${c.port}` : null; };
      r.pair = { local: at(pair.localCandidateId), remote: at(pair.remoteCandidateId) };
    }
    return r;
  });
}

// Log in on /agent in a new browser context and turn the browser phone on.
async function open(browser, out) {
  const context = await browser.newContext(https ? { ignoreHTTPSErrors: true } : {});
  if (opusOnly) {
    // Before the page's own script: every offer it makes lists Opus (and telephone-event,
    // CN, RED) but no PCMU/PCMA, as a browser without G.711 would.
    await context.addInitScript(() => {
      const createOffer = RTCPeerConnection.prototype.createOffer;
      RTCPeerConnection.prototype.createOffer = function (...a) {
        const codecs = RTCRtpReceiver.getCapabilities('audio').codecs
          .filter((c) => !/^audio\/(PCMU|PCMA)$/i.test(c.mimeType));
        for (const t of this.getTransceivers()) t.setCodecPreferences(codecs);
        return createOffer.apply(this, a);
      };
    });
  }
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') out.steps.push('console: ' + m.text()); });
  const by = (id) => page.locator(`[data-testid="${id}"]`);
  await page.goto(`${base}/agent`);
  await by('login-user').fill(agent);
  await by('login-password').fill(password);
  await by('login-submit').click();
  await by('agent-state').waitFor({ state: 'visible', timeout: 10000 });
  await by('browser-phone').check();
  await page.waitForFunction(() => me && me.phone === true, null, { timeout: 10000 });
  // What the origin gave the page: a secure context (the microphone needs one) and the
  // session cookie's flags (Secure under HTTPS).
  out.secure_context = await page.evaluate(() => window.isSecureContext);
  out.cookies = (await context.cookies()).map((c) => ({ name: c.name, secure: c.secure,
    httpOnly: c.httpOnly, sameSite: c.sameSite }));
  return { context, page, by };
}

async function talking(page) {
  const deadline = Date.now() + 20000;
  let s = {};
  while (Date.now() < deadline) {
    await page.waitForTimeout(250);
    s = await stats(page);
    if (s.conn === 'connected' && s.rx_packets >= 100 && s.rx_energy > 0 && s.tx_packets >= 100) break;
  }
  return s;
}

(async () => {
  const out = { steps: [] };
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args });
  try {
    const { context, page, by } = await open(browser, out);
    out.steps.push('phone on');
    process.stdout.write('READY\n');

    if (mode.startsWith('transfer-agent:')) {
      // Every text the note shows (the transfer's answer and the `call-ended` event race).
      await page.evaluate(() => {
        window.notesSeen = [];
        const n = document.getElementById('phone-note');
        new MutationObserver(() => window.notesSeen.push(n.textContent)).observe(n,
          { childList: true, characterData: true, subtree: true });
      });
      for (const name of mode.slice('transfer-agent:'.length).split(',')) {
        const call = { target: name, steps: [] };
        await page.evaluate(() => { window.notesSeen = []; });
        await by('incoming-call').waitFor({ state: 'visible', timeout: 30000 });
        await by('answer').click();
        call.stats = await talking(page);
        call.steps.push('talking');
        await by('transfer-kind').selectOption('agent');
        const option = page.locator(`[data-testid="transfer-agent"][value="${name}"]`);
        await option.waitFor({ state: 'attached', timeout: 10000 });
        call.listed_state = await option.getAttribute('data-state');
        await by('transfer-target').fill(name);
        call.kind = await by('transfer-kind').inputValue();
        call.transfer_at = Date.now();
        await by('transfer-submit').click();
        await page.waitForFunction(() => phone.active === null && phone.pc === null, null, { timeout: 10000 });
        // Both notes (the API's answer and the ended call), in whichever order they came.
        await page.waitForFunction(() => window.notesSeen.some((t) => t.startsWith('Call ended'))
          && window.notesSeen.some((t) => t.startsWith('Transferred')), null, { timeout: 5000 }).catch(() => {});
        call.notes = await page.evaluate(() => window.notesSeen.slice());
        call.status_after = await by('call-status').textContent();
        call.steps.push('transferred');
        process.stdout.write(JSON.stringify(call) + '\n');
      }
      return;
    }
    await by('incoming-call').waitFor({ state: 'visible', timeout: 30000 });
    out.steps.push('ringing');
    out.screen_pop_name = await by('screen-pop-name').textContent();
    if (mode === 'dispose') {
      // The pop comes with the `offer` event, which may follow the ring by a few ms.
      await page.waitForFunction(() => !['', '–'].includes(document.getElementById('screen-pop-order').textContent),
        null, { timeout: 10000 }).catch(() => {});
      out.screen_pop_order = await by('screen-pop-order').textContent();
    }
    if (mode === 'ring-only') {
      await by('incoming-call').waitFor({ state: 'hidden', timeout: 30000 });
      out.note = await page.locator('#phone-note').textContent();
      out.ringing_after = await page.evaluate(() => phone.ringing);
      process.stdout.write(JSON.stringify(out) + '\n');
      return;
    }
    out.answered_at = Date.now();
    await by('answer').click();
    const s = await talking(page);
    out.stats = s;
    if (mode.startsWith('controls:')) {
      const rx = async () => (await stats(page)).rx_packets || 0;
      out.hold_at = Date.now();
      await by('hold').click();
      await page.waitForFunction(() => phone.held === true, null, { timeout: 5000 });
      await page.waitForTimeout(500);
      out.held_rx0 = await rx();
      await page.waitForTimeout(2500);
      out.held_rx1 = await rx();
      out.hold_label = await by('hold').textContent();
      out.resume_at = Date.now();
      await by('hold').click();
      await page.waitForFunction(() => phone.held === false, null, { timeout: 5000 });
      await page.waitForTimeout(500);
      out.resumed_rx0 = await rx();
      await page.waitForTimeout(2500);
      out.resumed_rx1 = await rx();
      out.dtmf_at = Date.now();
      await by('dtmf-pad').locator('button[data-digit="5"]').click();
      await page.waitForTimeout(1000);
      out.transfer_at = Date.now();
      await by('transfer-target').fill(mode.slice('controls:'.length));
      await by('transfer-submit').click();
      await page.waitForFunction(() => phone.active === null && phone.pc === null, null, { timeout: 10000 });
      out.note = await page.locator('#phone-note').textContent();
      out.steps.push('transferred');
      process.stdout.write(JSON.stringify(out) + '\n');
      return;
    }
    if (mode === 'vanish') {
      // The tab dies mid-call: no hang-up, the event stream and the media just stop.
      out.vanish_at = Date.now();
      await context.close();
      out.steps.push('vanished');
      process.stdout.write('VANISHED\n');
      // The test says when (after it saw the call released): logging in again takes the
      // session over, which would end a call still in progress differently.
      await new Promise((r) => process.stdin.once('data', r));
      const again = await open(browser, out);
      out.steps.push('back');
      const seen = [];
      const deadline = Date.now() + 30000;
      while (Date.now() < deadline) {
        const st = await again.by('agent-state').getAttribute('data-state');
        if (seen[seen.length - 1] !== st) seen.push(st);
        if (st === 'available') break;
        await again.page.waitForTimeout(200);
      }
      out.states_after = seen;
      process.stdout.write(JSON.stringify(out) + '\n');
      return;
    }
    out.rx_packets_shown = await by('call-stats-rx-packets').textContent();
    out.call_status = await by('call-status').textContent();
    out.steps.push('talked');
    await by('hangup').click();
    await page.waitForFunction(() => phone.active === null && phone.pc === null, null, { timeout: 10000 });
    out.steps.push('hung up');
    out.after = await by('call-status').textContent();
    if (mode === 'dispose') {
      // The disposition form, for the call the pop showed; the caller's record names the
      // agent once its call has ended there, so early submits may be refused: retry.
      const deadline = Date.now() + 20000;
      while (Date.now() < deadline) {
        await page.evaluate(() => { document.getElementById('disposition-result').textContent = ''; });
        await by('disposition-submit').click();
        await page.waitForFunction(() => document.getElementById('disposition-result').textContent !== '',
          null, { timeout: 5000 }).catch(() => {});
        out.disposition = await by('disposition-result').textContent();
        if (out.disposition === 'saved') break;
        await page.waitForTimeout(500);
      }
      out.disposition_call = await page.evaluate(() => lastCall);
    }
    process.stdout.write(JSON.stringify(out) + '\n');
  } catch (e) {
    out.error = String(e && e.stack || e);
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
