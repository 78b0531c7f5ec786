#!/usr/bin/env node
// Runs deflate.html in headless Chromium against a wsreactor server and prints its results.
//
// Usage: node driver.mjs ws://127.0.0.1:PORT shared|dedicated
//
// The browser is $WSREACTOR_CHROMIUM, else `chromium` on PATH (Debian's package; tools/test.sh
// installs it). It is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: no
// port, no npm package): open the page from file://, wait for its load, await
// window.wsreactorResults, print one `ok NAME` / `FAIL NAME: why` line per check, close the
// browser. Chromium runs in its own process group with a fresh profile in a temporary
// directory; the group is killed and the directory removed however the run ends, and the whole
// run is bounded by RUN_TIMEOUT.
//
// Exits 1 if any check failed or the page could not be run, 2 on a usage error.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const RUN_TIMEOUT = 240_000;
const STEP_TIMEOUT = 30_000;
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-extensions',
  '--remote-debugging-pipe',
];

class Failed extends Error {}

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failed(`timed out after ${ms / 1000}s ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** A DevTools protocol client on Chromium's pipe: JSON messages, each ended by a NUL byte. */
class Cdp {
  constructor(input, output) {
    this.input = input;
    this.nextId = 1;
    this.calls = new Map();
    this.listeners = [];
    let buf = '';
    output.setEncoding('utf8');
    output.on('data', (chunk) => {
      buf += chunk;
      let end;
      while ((end = buf.indexOf('\0')) >= 0) {
        const msg = JSON.parse(buf.slice(0, end));
        buf = buf.slice(end + 1);
        this.dispatch(msg);
      }
    });
  }

  dispatch(msg) {
    if (msg.id !== undefined) {
      const call = this.calls.get(msg.id);
      this.calls.delete(msg.id);
      if (!call) return;
      if (msg.error) call.reject(new Failed(`${call.method}: ${msg.error.message}`));
      else call.resolve(msg.result);
      return;
    }
    for (const l of this.listeners.slice()) l(msg);
  }

  call(method, params = {}, sessionId = undefined, timeout = STEP_TIMEOUT) {
    const id = this.nextId++;
    this.input.write(`${JSON.stringify({ id, method, params, sessionId })}\0`);
    const reply = new Promise((resolve, reject) => this.calls.set(id, { method, resolve, reject }));
    return withTimeout(reply, timeout, `for ${method}`);
  }

  /** Resolves with the first event `method` (of `sessionId`) sent after this call. */
  event(method, sessionId) {
    return new Promise((resolve) => {
      const l = (msg) => {
        if (msg.method === method && msg.sessionId === sessionId) {
          this.listeners.splice(this.listeners.indexOf(l), 1);
          resolve(msg.params);
        }
      };
      this.listeners.push(l);
    });
  }

  on(listener) {
    this.listeners.push(listener);
  }
}

/** Opens the page, waits for its checks and returns them ([{ name, ok, why }]). */
async function runPage(cdp, pageUrl, log) {
  const { targetId } = await cdp.call('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await cdp.call('Target.attachToTarget', { targetId, flatten: true });
  cdp.on((msg) => {
    if (msg.sessionId !== sessionId) return;
    if (msg.method === 'Runtime.consoleAPICalled') {
      log(`console.${msg.params.type}: ${msg.params.args.map((a) => a.value ?? a.description).join(' ')}`);
    } else if (msg.method === 'Runtime.exceptionThrown') {
      const d = msg.params.exceptionDetails;
      log(`page exception: ${d.exception?.description ?? d.text}`);
    }
  });
  await cdp.call('Runtime.enable', {}, sessionId);
  await cdp.call('Page.enable', {}, sessionId);
  const loaded = cdp.event('Page.loadEventFired', sessionId);
  const nav = await cdp.call('Page.navigate', { url: pageUrl }, sessionId);
  if (nav.errorText) throw new Failed(`cannot open ${pageUrl}: ${nav.errorText}`);
  await withTimeout(loaded, STEP_TIMEOUT, 'for the page to load');
  const { result, exceptionDetails } = await cdp.call(
    'Runtime.evaluate',
    { expression: 'window.wsreactorResults', awaitPromise: true, returnByValue: true },
    sessionId,
    RUN_TIMEOUT,
  );
  if (exceptionDetails) throw new Failed(`page script failed: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`);
  if (!Array.isArray(result.value)) throw new Failed(`the page gave no results (window.wsreactorResults is ${result.type})`);
  return result.value;
}

async function main() {
  const [base, mode] = process.argv.slice(2);
  if (process.argv.length !== 4 || !base.startsWith('ws://') || !['shared', 'dedicated'].includes(mode)) {
    console.error('usage: node driver.mjs ws://HOST:PORT shared|dedicated');
    return 2;
  }
  const chromium = process.env.WSREACTOR_CHROMIUM || 'chromium';
  const profile = mkdtempSync(join(tmpdir(), 'wsreactor-chromium-'));
  const pageUrl = new URL(pathToFileURL(join(here, 'deflate.html')));
  pageUrl.search = new URLSearchParams({ url: base, mode }).toString();

  // stdin, stdout, stderr, then fd 3 (Chromium reads commands) and fd 4 (it writes replies).
  const child = spawn(chromium, [...FLAGS, `--user-data-dir=${profile}`, 'about:blank'], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
    detached: true,
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s) => {
    stderr = (stderr + s).slice(-4000);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  const spawned = new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (e) => reject(new Failed(`cannot start ${chromium}: ${e.message}; run tools/test.sh`)));
  });
  killGroup = () => {
    try {
      process.kill(-child.pid, 'SIGKILL'); // Chromium and its helpers: the group we started
    } catch {
      // already gone
    }
    rmSync(profile, { recursive: true, force: true });
  };

  let results = [];
  let failure = null;
  const notes = [];
  const cdp = new Cdp(child.stdio[3], child.stdio[4]);
  child.stdio[3].on('error', () => {}); // a browser that died is reported below
  try {
    await spawned;
    const version = await cdp.call('Browser.getVersion');
    console.log(`# ${version.product}, ${version.userAgent}`);
    results = await Promise.race([
      runPage(cdp, pageUrl.href, (line) => notes.push(line)),
      exited.then((how) => {
        throw new Failed(`chromium exited (${how}) before the checks finished`);
      }),
    ]);
  } catch (e) {
    failure = e instanceof Failed ? e.message : `${e.name}: ${e.message}`;
  } finally {
    await cdp.call('Browser.close').catch(() => {});
    await withTimeout(exited, 5000, 'for chromium to exit').catch(() => {});
    killGroup();
  }

  for (const line of notes) console.log(`# ${line}`);
  for (const r of results) console.log(r.ok ? `ok ${r.name}` : `FAIL ${r.name}: ${r.why}`);
  if (failure) {
    console.log(`FAIL chromium_run: ${failure}`);
    console.log(`# chromium stderr (last lines):\n${stderr.replace(/^/gm, '#   ')}`);
  }
  const failed = results.filter((r) => !r.ok).map((r) => r.name);
  if (failure) failed.push('chromium_run');
  console.log(`# chromium summary: ${results.length + (failure ? 1 : 0) - failed.length} ok, ${failed.length} FAIL`);
  if (failed.length) console.log(`# failed: ${failed.join(' ')}`);
  return failed.length || !results.length ? 1 : 0;
}

// The last resort if something above hangs: kill the browser, fail.
let killGroup = () => {};
const timer = setTimeout(() => {
  console.log(`FAIL chromium_run: no result after ${RUN_TIMEOUT / 1000 + 30}s`);
  killGroup();
  process.exit(1);
}, RUN_TIMEOUT + 30_000);
timer.unref();
process.exitCode = await main();
