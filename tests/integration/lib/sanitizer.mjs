// Sanitizer reports of the programs a test ran, in the sanitized pass (scripts/test --sanitize).
//
// That pass builds ternd, the CLI and the C test programs with ASan, LeakSanitizer and UBSan
// into build-asan and points the tests at them (ctest's TERND/TERN_CLI/TERN_BUILD). Every
// sanitized process writes its ASan and LSan reports to $TERN_SANITIZER_LOGS/asan.PID instead
// of its stderr (ASAN_OPTIONS log_path), so that a report of a process whose stderr nobody
// reads (a ternd killed at the end of a test, a CLI run in the background) still fails
// something: the test that started the process (here), and the whole pass (scripts/test).
// UBSan reports stay on stderr (GCC's combined runtime loses them with a log_path of their
// own), so stderr is scanned too; a UBSan report also stops the program (exit status 1).
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

const STDERR_REPORT = /runtime error:|ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)/;

/**
 * Throws if process pid (named what) left a sanitizer report, in its file or in stderr (the
 * text of its stderr the caller kept, if any).
 */
export function assertNoSanitizerReport(pid, what, stderr = '') {
  const r = sanitizerReport(pid);
  if (r) throw new Error(`${what} (pid ${pid}) left a sanitizer report:\n${r}`);
  const m = STDERR_REPORT.exec(stderr);
  if (m) throw new Error(`${what} (pid ${pid}) reported on stderr:\n${stderr.slice(Math.max(0, m.index - 200), m.index + 4000)}`);
}
