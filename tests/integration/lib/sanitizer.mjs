// Sanitizer reports of the programs a test ran, in the sanitized pass (scripts/test --sanitize).
//
// That pass builds ternd, the CLI and the C test programs with ASan, LeakSanitizer and UBSan
// into build-asan and points the tests at them (ctest's TERND/TERN_CLI/TERN_BUILD). Every
// sanitized process writes its reports to $TERN_SANITIZER_LOGS/{asan,ubsan}.PID instead of
// its stderr (ASAN_OPTIONS/UBSAN_OPTIONS log_path), so that a report of a process whose stderr
// nobody reads (a ternd killed at the end of a test, a CLI run in the background) still fails
// something: the test that started the process (here), and the whole pass (scripts/test).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const SANITIZER_LOGS = process.env.TERN_SANITIZER_LOGS || '';

/** The reports process pid wrote, or null (always null outside the sanitized pass). */
export function sanitizerReport(pid) {
  if (!SANITIZER_LOGS || !pid || !existsSync(SANITIZER_LOGS)) return null;
  const mine = readdirSync(SANITIZER_LOGS).filter((f) => f.endsWith(`.${pid}`));
  if (!mine.length) return null;
  return mine.map((f) => `----- ${f} -----\n${readFileSync(path.join(SANITIZER_LOGS, f), 'utf8')}`).join('\n');
}

/** Throws if process pid (named what) left a sanitizer report. */
export function assertNoSanitizerReport(pid, what) {
  const r = sanitizerReport(pid);
  if (r) throw new Error(`${what} (pid ${pid}) left a sanitizer report:\n${r}`);
}
