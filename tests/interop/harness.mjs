// Shared by the Node interop scripts: the pinned `ws`, check helpers, and the summary line.

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `ws` from $WSREACTOR_NODE_MODULES, else from node_modules beside this file
 * (`npm ci --prefix tests/interop`); exits 2 when it is missing.
 */
export function loadWs() {
  const here = dirname(fileURLToPath(import.meta.url));
  const nodeModules = process.env.WSREACTOR_NODE_MODULES || join(here, 'node_modules');
  const require = createRequire(import.meta.url);
  try {
    return {
      WebSocket: require(join(nodeModules, 'ws')),
      wsVersion: require(join(nodeModules, 'ws', 'package.json')).version,
    };
  } catch (e) {
    console.error(`cannot load ws from ${nodeModules}: ${e.message}; run tools/test.sh`);
    process.exit(2);
  }
}

/** A check's failure, with the reason printed after `FAIL NAME:`. */
export class CheckFailed extends Error {}

export function expect(cond, why) {
  if (!cond) throw new CheckFailed(why);
}

export function describe(isBinary, len) {
  return `${isBinary ? 'binary' : 'text'} of ${len} bytes`;
}

export function firstDifference(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

export function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`timed out after ${ms / 1000}s ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** Prints the summary of `results` ([name, ok] pairs); returns the exit code. */
export function summarize(script, results) {
  const failed = results.filter(([, ok]) => !ok).map(([name]) => name);
  console.log(`# ${script} summary: ${results.length - failed.length} ok, ${failed.length} FAIL`);
  if (failed.length) console.log(`# failed: ${failed.join(' ')}`);
  return failed.length ? 1 : 0;
}
