// Runs tests/push/push_probe.c (built as push_probe) and collects its JSON lines.
//
//   const r = await runProbe({ regs: [{provider:'webhook', token:'t1'}], settings: ['--push-webhook-url', url] });
//   r.code, r.open, r.regs, r.results, r.done, r.stderr
//
// The binary comes from $PUSH_PROBE, else $TERN_BUILD/push_probe, else build/push_probe.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const PUSH_PROBE = process.env.PUSH_PROBE ||
  path.join(process.env.TERN_BUILD || path.join(REPO_ROOT, 'build'), 'push_probe');

/**
 * opts.regs: PUT /v1/push bodies (objects or strings; "{i}" is the device index)
 * opts.parseOnly (only parse the registrations), opts.repeat, opts.times, opts.sender, opts.count, opts.preview, opts.offline, opts.every, opts.onlineAt
 * opts.settings: ternd flags for the push library (--push-...)
 * opts.wrap: a command to run the probe under (e.g. ['taskset', '-c', '0'])
 */
export function runProbe(opts) {
  if (!existsSync(PUSH_PROBE)) throw new Error(`push_probe not found at ${PUSH_PROBE} (build it, or set PUSH_PROBE)`);
  const args = [];
  for (const r of opts.regs ?? []) args.push('--reg', typeof r === 'string' ? r : JSON.stringify(r));
  const opt = (flag, v) => { if (v !== undefined) args.push(flag, String(v)); };
  opt('--repeat', opts.repeat);
  opt('--sender', opts.sender);
  opt('--count', opts.count);
  opt('--preview', opts.preview);
  opt('--times', opts.times);
  opt('--offline', opts.offline);
  opt('--every', opts.every);
  opt('--online-at', opts.onlineAt);
  opt('--timeout', opts.timeout ?? 60000);
  if (opts.parseOnly) args.push('--parse-only');
  args.push('--', '--log-level', opts.logLevel ?? 'warn', ...(opts.settings ?? []));
  const wrap = opts.wrap ?? []; // e.g. ['taskset', '-c', '0']
  const proc = wrap.length ? spawn(wrap[0], [...wrap.slice(1), PUSH_PROBE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(PUSH_PROBE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { err += d; });
  return new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('exit', (code) => {
      const lines = out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
      const r = {
        code, lines, stderr: err, command: [PUSH_PROBE, ...args],
        open: lines.find((l) => l.event === 'open'),
        regs: lines.filter((l) => l.event === 'reg'),
        results: lines.filter((l) => l.event === 'result'),
        refused: lines.filter((l) => l.event === 'refused'),
        done: lines.find((l) => l.event === 'done'),
        timeout: lines.some((l) => l.event === 'timeout'),
      };
      resolve(r);
    });
  });
}

/** The value of one tern_push_total series in the done line's metrics text. */
export function metric(r, provider, result) {
  const m = new RegExp(`^tern_push_total\\{provider="${provider}",result="${result}"\\} (\\d+)$`, 'm').exec(r.done?.metrics ?? '');
  return m ? Number(m[1]) : undefined;
}
