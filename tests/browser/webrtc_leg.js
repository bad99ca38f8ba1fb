// A real Chromium WebRTC peer against the server's str0m leg (src/webrtc): the page takes
// the fake microphone, offers audio (waiting for ICE gathering, as JsSIP does), prints
// `OFFER <json>` on stdout, reads `ANSWER <json>` from stdin, then waits for ICE and DTLS
// to connect and for audio from the leg, and prints one JSON line of getStats figures.
// usage: node webrtc_leg.js   (playwright-core through NODE_PATH; Chromium at $CHROMIUM)
const http = require('http');
const readline = require('readline');
const { chromium } = require('playwright-core');

// Loopback host candidates, not mDNS names: --allow-loopback-in-peer-connection gathers
// 127.0.0.1 and WebRtcHideLocalIpsWithMdns off keeps it an IP our ICE-lite leg can use.
const args = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream', '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns', '--autoplay-policy=no-user-gesture-required'];

const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

(async () => {
  const out = { steps: [] };
  // getUserMedia needs a secure context: http://127.0.0.1 is one.
  const srv = http.createServer((_q, r) => { r.setHeader('content-type', 'text/html'); r.end('<audio id="a" autoplay></audio>'); });
  await new Promise((res) => srv.listen(0, '127.0.0.1', res));
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => out.steps.push('console: ' + m.text()));
    await page.goto(`http://127.0.0.1:${srv.address().port}/`);
    const offer = await page.evaluate(async () => {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const pc = new RTCPeerConnection({ iceServers: [] });
      window.pc = pc;
      pc.ontrack = (e) => { document.getElementById('a').srcObject = e.streams[0] || new MediaStream([e.track]); };
      stream.getTracks().forEach((t) => pc.addTrack(t, stream));
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((res) => {
        if (pc.iceGatheringState === 'complete') return res();
        pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') res(); };
        setTimeout(res, 3000);
      });
      return pc.localDescription.sdp;
    });
    out.steps.push('offer');
    process.stdout.write('OFFER ' + JSON.stringify(offer) + '\n');
    const line = await nextLine();
    const answer = JSON.parse(line.replace(/^ANSWER /, ''));
    out.stats = await page.evaluate(async (sdp) => {
      const pc = window.pc;
      await pc.setRemoteDescription({ type: 'answer', sdp });
      const deadline = Date.now() + 15000;
      let r = {};
      while (Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 250));
        r = { ice: pc.iceConnectionState, conn: pc.connectionState };
        (await pc.getStats()).forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'audio') { r.rx_bytes = s.bytesReceived; r.rx_packets = s.packetsReceived; r.rx_energy = s.totalAudioEnergy; }
          if (s.type === 'outbound-rtp' && s.kind === 'audio') { r.tx_packets = s.packetsSent; }
          if (s.type === 'transport') { r.dtls = s.dtlsState; r.srtp = s.srtpCipher; }
          if (s.type === 'codec' && s.mimeType.startsWith('audio/')) { r.codecs = (r.codecs || []).concat(s.mimeType); }
        });
        if (r.conn === 'connected' && r.rx_packets >= 50 && r.tx_packets >= 50) break;
      }
      return r;
    }, answer);
    process.stdout.write(JSON.stringify(out) + '\n');
  } catch (e) {
    out.error = String(e && e.stack || e);
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exitCode = 1;
  } finally {
    await browser.close();
    srv.close();
    lines.close();
  }
})();
